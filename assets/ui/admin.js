// The admin console: sign-in, Customers > All Customers, the customer's page with "Reset
// Password" and "Force Sign In", the password settings and the audit log. A control is shown
// only when the signed-in admin's role allows it (`currentAdmin.permissions`); the API enforces
// the same permissions whatever the page shows.
import { t, gql, tokenStore, notify, describe, when, whenShort, el, busy, start } from "./common.js";

const adminToken = tokenStore("latchkey.admin");
const RETURN_TO = "latchkey.admin-return";
const NEXT_NOTICE = "latchkey.admin-notice";
const PAGE_SIZE = 20;

function goToSignIn(noticeKey) {
  adminToken.clear();
  if (noticeKey) {
    sessionStorage.setItem(NEXT_NOTICE, noticeKey);
  }
  sessionStorage.setItem(RETURN_TO, window.location.pathname + window.location.search);
  window.location.assign("/admin/sign-in");
}

/** Handles an error no page handles specially; an ended session goes back to sign-in. */
function failed(error) {
  if (error.code === "UNAUTHENTICATED") {
    goToSignIn("common.session_ended");
  } else {
    notify(describe(error), "error");
  }
}

function fullName(customer) {
  const lang = document.documentElement.lang;
  return lang === "ja" || lang === "ko"
    ? customer.lastname + " " + customer.firstname
    : customer.firstname + " " + customer.lastname;
}

/** Where to go after sign-in: the console page that sent the admin here, else the grid. */
function returnPath() {
  const saved = sessionStorage.getItem(RETURN_TO);
  sessionStorage.removeItem(RETURN_TO);
  try {
    const url = new URL(saved || "/admin/customers", window.location.origin);
    // Only pages of this console on this origin: never an address another page could plant.
    if (
      url.origin === window.location.origin &&
      url.pathname.startsWith("/admin/") &&
      !url.pathname.split("/").includes("..") &&
      url.pathname !== "/admin/sign-in"
    ) {
      return url.pathname + url.search;
    }
  } catch (e) {
    // Not a URL: fall through.
  }
  return "/admin/customers";
}

function signInPage() {
  const key = sessionStorage.getItem(NEXT_NOTICE);
  if (key) {
    sessionStorage.removeItem(NEXT_NOTICE);
    notify(t(key), "info");
  }
  const form = document.getElementById("admin-sign-in");
  const username = document.getElementById("username");
  const password = document.getElementById("password");
  username.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    username.toggleAttribute("aria-invalid", !username.value.trim());
    password.toggleAttribute("aria-invalid", !password.value);
    if (!username.value.trim() || !password.value) {
      notify(t("common.required"), "error");
      (username.value.trim() ? password : username).focus();
      return;
    }
    await busy(form.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation AdminSignIn($username: String!, $password: String!) { generateAdminToken(username: $username, password: $password) { token expiresAt } }",
          { username: username.value.trim(), password: password.value },
        );
        adminToken.set(data.generateAdminToken);
        window.location.assign(returnPath());
      } catch (error) {
        password.value = "";
        notify(error.code === "AUTHENTICATION_FAILED" ? t("admin.failed") : describe(error), "error");
        password.focus();
      }
    });
  });
}

/** Signs the page in: the admin's name and role in the menu, controls their role allows. */
async function session() {
  const token = adminToken.get();
  if (!token) {
    goToSignIn(null);
    return null;
  }
  let me;
  try {
    me = (await gql("query Me { currentAdmin { username role permissions } }", {}, token)).currentAdmin;
  } catch (error) {
    failed(error);
    return null;
  }
  for (const node of document.querySelectorAll("[data-permission]")) {
    if (me.permissions.includes(node.dataset.permission)) {
      node.hidden = false;
    } else {
      node.remove();
    }
  }
  document.getElementById("admin-who").textContent = t("admin.signed_in_as", me);
  document.getElementById("admin-sign-out").addEventListener("click", async (event) => {
    await busy(event.currentTarget, async () => {
      try {
        await gql("mutation SignOut { revokeAdminToken }", {}, token);
      } catch (error) {
        // Already signed out or unreachable: forget the token here either way.
      }
      adminToken.clear();
      window.location.assign("/admin/sign-in");
    });
  });
  return { token, can: (permission) => me.permissions.includes(permission) };
}

/**
 * A table showing one cursor-paged connection, with the record count, an empty-state row, and
 * "Next page" / "First page" (which may hide themselves, so focus moves to the table).
 * `fetch(after)` answers the connection; `row(node)` makes a node's row. Returns `reload`,
 * which shows the first page.
 */
function pagedTable(tableId, emptyKey, fetch, row) {
  const table = document.getElementById(tableId);
  const rows = table.tBodies[0];
  const columns = table.tHead.rows[0].cells.length;
  const count = document.getElementById("count");
  const next = document.getElementById("next-page");
  const first = document.getElementById("first-page");
  let endCursor = null;

  async function show(after) {
    try {
      const page = await fetch(after);
      count.textContent = t("admin.records", { count: page.totalCount });
      rows.textContent = "";
      if (!page.edges.length) {
        const tr = el("tr");
        tr.appendChild(el("td", t(emptyKey), { colspan: String(columns) }));
        rows.appendChild(tr);
      }
      for (const { node } of page.edges) {
        rows.appendChild(row(node));
      }
      endCursor = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
      next.hidden = !endCursor;
      first.hidden = !after;
    } catch (error) {
      failed(error);
    }
  }

  table.setAttribute("tabindex", "-1");
  next.addEventListener("click", async () => {
    await busy(next, () => show(endCursor));
    table.focus();
  });
  first.addEventListener("click", async () => {
    await show(null);
    table.focus();
  });
  return () => show(null);
}

async function customersPage(admin) {
  const form = document.getElementById("grid-search");
  const search = document.getElementById("search");
  const sort = document.getElementById("sort");
  const params = new URLSearchParams(window.location.search);
  search.value = params.get("search") || "";
  if (params.get("sort")) {
    sort.value = params.get("sort");
  }
  // The query the shown page answers: "Next page" continues it even if the fields were edited
  // since (a cursor belongs to its search and sort).
  let shown = null;

  function snapshot() {
    const [field, direction] = (sort.value || "CREATED_AT:DESC").split(":");
    return {
      filter: search.value.trim() ? { search: search.value.trim() } : null,
      sort: { field, direction },
    };
  }

  const reload = pagedTable(
    "grid",
    "admin.no_customers",
    async (after) =>
      (
        await gql(
          `query Grid($filter: CustomerFilter, $sort: CustomerSort, $first: Int, $after: String) {
            customers(filter: $filter, sort: $sort, first: $first, after: $after) {
              totalCount
              pageInfo { hasNextPage endCursor }
              edges { node { id firstname lastname email createdAt activeTokenCount lockedUntil passwordChangedAt lastResetRequestedAt } }
            }
          }`,
          { ...shown, first: PAGE_SIZE, after },
          admin.token,
        )
      ).customers,
    (node) => {
      const tr = el("tr", null, { "data-customer": node.id });
      tr.appendChild(el("td", fullName(node), { class: "nowrap" }));
      tr.appendChild(el("td", node.email));
      tr.appendChild(el("td", whenShort(node.createdAt), { class: "nowrap" }));
      tr.appendChild(el("td", node.activeTokenCount, { class: "num" }));
      tr.appendChild(el("td", node.lockedUntil ? whenShort(node.lockedUntil) : "—", { class: "nowrap" }));
      tr.appendChild(el("td", whenShort(node.passwordChangedAt), { class: "nowrap" }));
      tr.appendChild(el("td", whenShort(node.lastResetRequestedAt), { class: "nowrap" }));
      const action = el("td");
      action.appendChild(
        el("a", t("admin.edit"), {
          href: "/admin/customers/" + encodeURIComponent(node.id),
          "aria-label": t("admin.edit") + " — " + fullName(node),
        }),
      );
      tr.appendChild(action);
      return tr;
    },
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (search.value.trim()) {
      query.set("search", search.value.trim());
    }
    query.set("sort", sort.value);
    window.history.replaceState(null, "", "?" + query.toString());
    shown = snapshot();
    await busy(form.querySelector("button[type=submit]"), reload);
  });
  shown = snapshot();
  await reload();
}

async function customerPage(admin) {
  let id = window.location.pathname.split("/").pop();
  try {
    id = decodeURIComponent(id);
  } catch (e) {
    // A malformed address names no customer; the API answers null.
  }
  const heading = document.getElementById("customer-name");
  const dialog = document.getElementById("confirm");

  async function load() {
    const data = await gql(
      `query Customer($id: ID!) {
        customerById(id: $id) { id firstname lastname email locale createdAt activeTokenCount lockedUntil passwordChangedAt lastResetRequestedAt }
      }`,
      { id },
      admin.token,
    );
    const customer = data.customerById;
    if (!customer) {
      notify(t("admin.not_found"), "error");
      for (const button of document.querySelectorAll(".page-actions button")) {
        button.remove();
      }
      return;
    }
    heading.textContent = fullName(customer);
    document.title = fullName(customer) + " · " + document.title.split(" · ").pop();
    const languages = new Intl.DisplayNames([document.documentElement.lang], { type: "language" });
    customer.locale = languages.of(customer.locale) || customer.locale;
    for (const dd of document.querySelectorAll("#info [data-field]")) {
      const value = customer[dd.dataset.field];
      dd.textContent =
        dd.dataset.field.endsWith("At") || dd.dataset.field === "lockedUntil"
          ? value
            ? when(value)
            : "—"
          : value;
    }
  }

  const reset = document.getElementById("reset-password");
  if (reset) {
    reset.addEventListener("click", async () => {
      await busy(reset, async () => {
        try {
          await gql("mutation AdminReset($id: ID!) { adminResetPassword(customerId: $id) }", { id }, admin.token);
          notify(t("admin.reset_sent"), "ok");
          await load();
        } catch (error) {
          if (error.code === "NOT_FOUND") {
            notify(t("admin.not_found"), "error");
          } else {
            failed(error);
          }
        }
      });
    });
  }

  const force = document.getElementById("force-sign-in");
  if (force) {
    force.addEventListener("click", () => {
      dialog.returnValue = "";
      dialog.showModal();
      document.getElementById("confirm-cancel").focus();
    });
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "ok") {
        force.focus();
        return;
      }
      await busy(force, async () => {
        try {
          const data = await gql(
            "mutation ForceSignIn($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
            { id },
            admin.token,
          );
          notify(t("admin.revoked", { count: data.revokeCustomerTokens.revokedCount }), "ok");
          await load();
        } catch (error) {
          if (error.code === "NOT_FOUND") {
            notify(t("admin.not_found"), "error");
          } else {
            failed(error);
          }
        }
      });
      force.focus();
    });
  }

  try {
    await load();
  } catch (error) {
    failed(error);
  }
}

const SETTINGS_FIELDS = [
  "resetLinkLifetimeHours",
  "resetRequestLimitMethod",
  "maxResetRequestsPerHour",
  "minSecondsBetweenResetRequests",
  "minPasswordLength",
  "requiredCharacterClasses",
  "allowWhitespace",
  "lockoutFailures",
  "lockoutMinutes",
  "customerTokenLifetimeMinutes",
  "adminTokenLifetimeMinutes",
];

async function settingsPage(admin) {
  const form = document.getElementById("settings");
  const fieldset = form.querySelector("fieldset");
  const selection = SETTINGS_FIELDS.join(" ");

  function fill(settings) {
    for (const name of SETTINGS_FIELDS) {
      const input = document.getElementById(name);
      if (input.type === "checkbox") {
        input.checked = settings[name];
      } else {
        input.value = settings[name];
      }
      input.removeAttribute("aria-invalid");
    }
  }

  try {
    const data = await gql(`query Settings { passwordSettings { ${selection} } }`, {}, admin.token);
    fill(data.passwordSettings);
  } catch (error) {
    failed(error);
    return;
  }
  if (!admin.can("SETTINGS_MANAGE")) {
    return;
  }
  fieldset.disabled = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = {};
    for (const name of SETTINGS_FIELDS) {
      const field = document.getElementById(name);
      if (field.type === "checkbox") {
        input[name] = field.checked;
      } else if (field.tagName === "SELECT") {
        input[name] = field.value;
      } else {
        const number = Number(field.value);
        if (field.value.trim() === "" || !Number.isInteger(number)) {
          field.setAttribute("aria-invalid", "true");
          const message = field.value.trim() === "" ? t("common.required") : t("common.whole_number");
          notify(t("admin.invalid_field", { field: field.labels[0].textContent, message }), "error");
          field.focus();
          return;
        }
        input[name] = number;
      }
    }
    await busy(document.getElementById("save"), async () => {
      try {
        const data = await gql(
          `mutation Save($input: PasswordSettingsInput!) { updatePasswordSettings(input: $input) { ${selection} } }`,
          { input },
          admin.token,
        );
        fill(data.updatePasswordSettings);
        // The form is long: bring the confirmation into view (and to screen readers).
        notify(t("admin.saved"), "ok").focus();
      } catch (error) {
        const field = error.extensions.field && document.getElementById(error.extensions.field);
        if (error.code === "BAD_USER_INPUT" && field) {
          field.setAttribute("aria-invalid", "true");
          notify(t("admin.invalid_field", { field: field.labels[0].textContent, message: t("common.out_of_range") }), "error");
          field.focus();
        } else {
          failed(error);
        }
      }
    });
  });
}

async function auditLogPage(admin) {
  const form = document.getElementById("audit-filter");
  const action = document.getElementById("action");
  let shown = action.value;

  const reload = pagedTable(
    "audit",
    "admin.no_entries",
    async (after) =>
      (
        await gql(
          `query Audit($first: Int, $after: String, $filter: AuditLogFilter) {
            auditLog(first: $first, after: $after, filter: $filter) {
              totalCount
              pageInfo { hasNextPage endCursor }
              edges { node { id at actor action customerId clientIp } }
            }
          }`,
          { first: PAGE_SIZE, after, filter: shown ? { action: shown } : null },
          admin.token,
        )
      ).auditLog,
    (node) => {
      const tr = el("tr");
      tr.appendChild(el("td", whenShort(node.at), { class: "nowrap" }));
      tr.appendChild(el("td", node.actor));
      tr.appendChild(el("td", t("admin.action_" + node.action)));
      const customer = el("td");
      if (node.customerId) {
        customer.appendChild(
          el("a", node.customerId, { href: "/admin/customers/" + encodeURIComponent(node.customerId) }),
        );
      } else {
        customer.textContent = "—";
      }
      tr.appendChild(customer);
      tr.appendChild(el("td", node.clientIp || "—"));
      return tr;
    },
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    shown = action.value;
    await busy(form.querySelector("button[type=submit]"), reload);
  });
  await reload();
}

async function main() {
  const page = document.body.dataset.page;
  if (page === "admin-sign-in") {
    signInPage();
    return;
  }
  const admin = await session();
  if (!admin) {
    return;
  }
  const pages = {
    "admin-customers": customersPage,
    "admin-customer": customerPage,
    "admin-settings": settingsPage,
    "admin-audit-log": auditLogPage,
  };
  await (pages[page] || (() => {}))(admin);
}

start(main);
