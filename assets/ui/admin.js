// The admin console: sign-in, Customers > All Customers (search, filters, selection and bulk
// Actions), the customer's page with "Reset Password" and "Force Sign In", the bulk jobs with
// their progress, the password settings and the audit log. A control is shown
// only when the signed-in admin's role allows it (`currentAdmin.permissions`); the API enforces
// the same permissions whatever the page shows.
import {
  t,
  tn,
  number,
  gql,
  tokenStore,
  notify,
  describe,
  when,
  whenShort,
  el,
  busy,
  start,
  fieldError,
  requireNewPassword,
  showPolicyViolations,
  looksLikeEmail,
} from "./common.js";

const adminToken = tokenStore("latchkey.admin");
/** Where this browser keeps an admin's grant to skip the second factor ("Remember this
 * browser"), per username: it never stands in for the password. */
const GRANT_PREFIX = "latchkey.admin-grant.";
const RETURN_TO = "latchkey.admin-return";
const NEXT_NOTICE = "latchkey.admin-notice";
const STARTED_JOB = "latchkey.admin-started-job";
const PAGE_SIZE = 20;
/** The most customers a selection by id may hold (the API's limit); more are selected by filter. */
const MAX_SELECTED_IDS = 1000;
/** How often the Jobs page asks for the progress of running jobs. */
const POLL_MS = 1000;

/** The label of each bulk action: the same words as the single-customer buttons. */
const ACTION_LABELS = {
  FORCE_SIGN_IN: "admin.force_sign_in",
  SEND_RESET_EMAIL: "admin.reset_password",
  REQUIRE_NEW_PASSWORD: "admin.require_new_password",
};

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
          "mutation AdminSignIn($username: String!, $password: String!, $grant: String) { startAdminSignIn(username: $username, password: $password, deviceGrant: $grant) { token { token expiresAt } challenge enrolmentRequired rememberBrowserDays passkeyOptions } }",
          {
            username: username.value.trim(),
            password: password.value,
            grant: localStorage.getItem(GRANT_PREFIX + username.value.trim().toLowerCase()),
          },
        );
        password.value = "";
        const step = data.startAdminSignIn;
        if (step.token) {
          adminToken.set(step.token);
          window.location.assign(returnPath());
        } else if (step.enrolmentRequired) {
          askToEnrol(step.challenge, username.value.trim());
        } else {
          askForCode(step.challenge, step.rememberBrowserDays, step.passkeyOptions);
        }
      } catch (error) {
        password.value = "";
        notify(error.code === "AUTHENTICATION_FAILED" ? t("admin.failed") : describe(error), "error");
        password.focus();
      }
    });
  });

  // The factor step: the challenge lives in this page only (five minutes), never in storage.
  const factorForm = document.getElementById("admin-factor");
  const codeInput = document.getElementById("factor-code");
  let challenge = null;
  const rememberRow = document.getElementById("remember-row");
  const remember = document.getElementById("remember-browser");
  // The factor step's answer: the session, and this browser's grant if one was made.
  function signedIn(done) {
    if (done.deviceGrant) {
      localStorage.setItem(GRANT_PREFIX + username.value.trim().toLowerCase(), done.deviceGrant);
    }
    adminToken.set({ token: done.token, expiresAt: done.expiresAt });
    window.location.assign(returnPath());
  }
  const passkeyButton = document.getElementById("use-passkey");
  let passkeyOptions = null;
  function askForCode(issued, rememberDays, options) {
    challenge = issued;
    passkeyOptions = passkeysWork() ? options : null;
    passkeyButton.hidden = !passkeyOptions;
    rememberRow.hidden = !rememberDays;
    remember.checked = false;
    document.getElementById("remember-label").textContent = t("admin.remember_browser", { days: rememberDays });
    form.hidden = true;
    factorForm.hidden = false;
    fieldError(codeInput, null);
    codeInput.value = "";
    codeInput.focus();
  }
  function startOver() {
    challenge = null;
    factorForm.hidden = true;
    form.hidden = false;
    password.focus();
  }
  document.getElementById("factor-back").addEventListener("click", startOver);
  // A passkey (or security key) instead of a code: the browser's own prompt.
  passkeyButton.addEventListener("click", async () => {
    fieldError(codeInput, null);
    await busy(passkeyButton, async () => {
      let credential;
      try {
        const options = PublicKeyCredential.parseRequestOptionsFromJSON(JSON.parse(passkeyOptions).publicKey);
        credential = await navigator.credentials.get({ publicKey: options });
      } catch (error) {
        fieldError(codeInput, t("admin.passkey_cancelled"));
        return;
      }
      try {
        const data = await gql(
          "mutation AdminPasskey($challenge: String!, $credential: String!, $remember: Boolean!) { completeAdminSignInWithPasskey(challenge: $challenge, credential: $credential, rememberBrowser: $remember) { token expiresAt deviceGrant } }",
          {
            challenge,
            credential: JSON.stringify(credential.toJSON()),
            remember: !rememberRow.hidden && remember.checked,
          },
        );
        signedIn(data.completeAdminSignInWithPasskey);
      } catch (error) {
        fieldError(codeInput, error.code === "AUTHENTICATION_FAILED" ? t("admin.passkey_failed") : describe(error));
      }
    });
  });

  // The store requires a second factor and this admin has none: the challenge can only enrol
  // one (15 minutes), and the confirmation signs the admin in with their recovery codes.
  const enrolSection = document.getElementById("admin-enrol");
  const enrolForm = document.getElementById("enrol");
  const enrolName = document.getElementById("enrol-name");
  const confirmForm = document.getElementById("enrol-confirm");
  let enrolling = null;
  function askToEnrol(issued, who) {
    enrolling = { challenge: issued, username: who, factorId: null };
    form.hidden = true;
    enrolSection.hidden = false;
    enrolForm.hidden = false;
    document.getElementById("enrol-title").focus();
  }
  function enrolmentOver(error) {
    enrolling = null;
    hideScan();
    enrolSection.hidden = true;
    form.hidden = false;
    notify(error.code === "AUTHENTICATION_FAILED" ? t("admin.enrol_expired") : describe(error), "error");
    password.focus();
  }
  enrolForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!filledIn(enrolName)) {
      return;
    }
    await busy(enrolForm.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation Enrol($challenge: String!, $name: String!) { startAdminEnrolment(challenge: $challenge, name: $name) { factorId secret qrCodeSvg } }",
          { challenge: enrolling.challenge, name: enrolName.value.trim() },
        );
        enrolling.factorId = data.startAdminEnrolment.factorId;
        enrolForm.hidden = true;
        showScan(data.startAdminEnrolment);
      } catch (error) {
        if (error.code === "BAD_USER_INPUT") {
          fieldError(enrolName, error.message.replace(/^name: /, ""));
          enrolName.focus();
        } else {
          enrolmentOver(error);
        }
      }
    });
  });
  confirmForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = scannedCode();
    if (!code) {
      return;
    }
    await busy(confirmForm.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation Enrolled($challenge: String!, $id: ID!, $code: String!) { completeAdminEnrolment(challenge: $challenge, factorId: $id, code: $code) { token { token expiresAt } recoveryCodes } }",
          { challenge: enrolling.challenge, id: enrolling.factorId, code },
        );
        const done = data.completeAdminEnrolment;
        adminToken.set(done.token);
        hideScan();
        enrolSection.hidden = true;
        notify(t("admin.enrolled_signed_in"), "ok");
        showRecoveryCodes(done.recoveryCodes, enrolling.username, () => window.location.assign(returnPath()));
        enrolling = null;
      } catch (error) {
        if (error.code === "BAD_USER_INPUT") {
          scanRefused();
        } else {
          enrolmentOver(error);
        }
      }
    });
  });
  factorForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    fieldError(codeInput, null);
    const typed = codeInput.value.trim();
    if (!typed) {
      fieldError(codeInput, t("common.required"));
      codeInput.focus();
      return;
    }
    await busy(factorForm.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation AdminFactor($challenge: String!, $code: String!, $remember: Boolean!) { completeAdminSignIn(challenge: $challenge, code: $code, rememberBrowser: $remember) { token expiresAt deviceGrant } }",
          { challenge, code: typed, remember: !rememberRow.hidden && remember.checked },
        );
        signedIn(data.completeAdminSignIn);
      } catch (error) {
        codeInput.value = "";
        fieldError(codeInput, error.code === "AUTHENTICATION_FAILED" ? t("admin.factor_failed") : describe(error));
        codeInput.focus();
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
  // The role as the CLI and the API's audit spell it (the enum value in lower case).
  document.getElementById("admin-who").textContent = t("admin.signed_in_as", {
    username: me.username,
    role: me.role.toLowerCase(),
  });
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
  return { token, username: me.username, can: (permission) => me.permissions.includes(permission) };
}

/**
 * A table showing one cursor-paged connection, with the record count, an empty-state row, and
 * "Next page" / "First page" (which may hide themselves, so focus moves to the table).
 * `fetch(after)` answers the connection; `row(node)` makes a node's row; `shown(page)`, if
 * given, runs after each page is in place. Returns `reload`, which shows the first page.
 */
function pagedTable(tableId, emptyKey, fetch, row, shown) {
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
      count.textContent = t(page.totalCountIsEstimate ? "admin.records_estimate" : "admin.records", {
        count: number(page.totalCount),
      });
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
      if (shown) {
        shown(page);
      }
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

/** The grid's filters besides the search: the form field of each is named like the API's. */
const FILTER_FIELDS = [
  "createdFrom",
  "createdTo",
  "lastResetFrom",
  "lastResetTo",
  "passwordState",
  "locked",
  "signedIn",
  "externalId",
];

/** The start of a calendar day ("2026-12-01") in the admin's time zone, as the API's DateTime. */
function dayStart(value) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d).toISOString();
}

/** The last millisecond of that day (the API's ranges include both ends). */
function dayEnd(value) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(new Date(y, m - 1, d + 1).getTime() - 1).toISOString();
}

/** A count for a sentence: "1,234", or "about 1,234" when it is an estimate. */
function countText(count, estimate) {
  return estimate ? t("admin.about", { count: number(count) }) : number(count);
}

/**
 * The Actions menu button (the WAI-ARIA menu button pattern): Enter, Space or the arrows
 * open it on the first (or last) item, the arrows, Home and End move, Escape closes it back
 * onto the button, Tab or a click elsewhere closes it. `choose(action)` runs for an item.
 */
function menuButton(button, menu, choose) {
  const items = () => [...menu.querySelectorAll("[role=menuitem]")];
  function open(last) {
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const list = items();
    list[last ? list.length - 1 : 0].focus();
  }
  function close(refocus) {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (refocus) {
      button.focus();
    }
  }
  button.addEventListener("click", () => (menu.hidden ? open(false) : close(true)));
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      open(event.key === "ArrowUp");
    }
  });
  menu.addEventListener("keydown", (event) => {
    const list = items();
    const at = list.indexOf(document.activeElement);
    const moves = {
      ArrowDown: (at + 1) % list.length,
      ArrowUp: (at - 1 + list.length) % list.length,
      Home: 0,
      End: list.length - 1,
    };
    if (event.key in moves) {
      event.preventDefault();
      list[moves[event.key]].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      close(true);
    } else if (event.key === "Tab") {
      close(false);
    }
  });
  menu.addEventListener("click", (event) => {
    const item = event.target.closest("[role=menuitem]");
    if (item) {
      close(false);
      choose(item.dataset.action);
    }
  });
  document.addEventListener("click", (event) => {
    if (!menu.hidden && !menu.contains(event.target) && event.target !== button) {
      close(false);
    }
  });
  return items().length;
}

async function customersPage(admin) {
  const form = document.getElementById("grid-search");
  const search = document.getElementById("search");
  const sort = document.getElementById("sort");
  const filters = document.getElementById("filters");
  const params = new URLSearchParams(window.location.search);
  search.value = params.get("search") || "";
  if (params.get("sort")) {
    sort.value = params.get("sort");
  }
  for (const name of FILTER_FIELDS) {
    // An input drops a value it cannot hold (a malformed date, an unknown option).
    document.getElementById(name).value = params.get(name) || "";
  }

  function filterFromForm() {
    const filter = {};
    if (search.value.trim()) {
      filter.search = search.value.trim();
    }
    for (const name of FILTER_FIELDS) {
      const input = document.getElementById(name);
      const value = input.value.trim();
      if (!value) {
        continue;
      }
      const kind = input.dataset.filter;
      filter[name] =
        kind === "from" ? dayStart(value) : kind === "to" ? dayEnd(value) : kind === "boolean" ? value === "true" : value;
    }
    return filter;
  }

  function showFilterCount() {
    const on = FILTER_FIELDS.filter((name) => document.getElementById(name).value.trim()).length;
    document.getElementById("filter-count").textContent = on ? t("admin.filters_on", { count: on }) : "";
    return on;
  }
  if (showFilterCount()) {
    filters.open = true;
  }

  // The query the shown page answers: "Next page" continues it even if the fields were edited
  // since (a cursor belongs to its filter and sort), and "select all that match" takes it.
  let shown = null;

  function snapshot() {
    const [field, direction] = (sort.value || "CREATED_AT:DESC").split(":");
    return { filter: filterFromForm(), sort: { field, direction } };
  }

  // The selection: customers checked one by one (kept across pages and searches), or every
  // customer the shown query matches.
  const bulk = admin.can("CUSTOMERS_BULK") && document.getElementById("bulk");
  const picked = new Set();
  let everything = null; // { filter, count, estimate }
  let page = null;

  const boxes = () => [...document.querySelectorAll("#grid tbody input[data-select]")];

  function selectedCount() {
    return everything ? everything.count : picked.size;
  }

  function showSelection() {
    if (!bulk) {
      return;
    }
    const count = selectedCount();
    document.getElementById("selected-count").textContent = count
      ? tn("admin.selected", count, { count: countText(count, everything && everything.estimate) })
      : t("admin.selected_none");
    document.getElementById("actions").disabled = !count;
    document.getElementById("clear-selection").hidden = !count;
    const onPage = boxes();
    for (const box of onPage) {
      box.checked = Boolean(everything) || picked.has(box.dataset.select);
      box.disabled = Boolean(everything);
    }
    const checked = onPage.filter((b) => b.checked).length;
    const all = document.getElementById("select-page");
    all.checked = onPage.length > 0 && checked === onPage.length;
    all.indeterminate = checked > 0 && checked < onPage.length;
    all.disabled = Boolean(everything) || !onPage.length;
    const banner = document.getElementById("select-all-banner");
    const text = document.getElementById("select-all-text");
    const more = document.getElementById("select-all-matching");
    if (everything) {
      text.textContent = tn("admin.all_matching_selected", everything.count, {
        count: countText(everything.count, everything.estimate),
      });
      more.hidden = true;
      banner.hidden = false;
    } else if (all.checked && page && page.totalCount > onPage.length) {
      text.textContent = tn("admin.page_selected", onPage.length);
      more.textContent = t("admin.select_all_matching", {
        count: countText(page.totalCount, page.totalCountIsEstimate),
      });
      more.hidden = false;
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }

  /** Checks (or unchecks) customers by id; refuses past the API's limit, with a notice. */
  function pick(ids, on) {
    for (const id of ids) {
      if (!on) {
        picked.delete(id);
      } else if (picked.size < MAX_SELECTED_IDS || picked.has(id)) {
        picked.add(id);
      } else {
        notify(t("admin.too_many", { max: number(MAX_SELECTED_IDS) }), "error");
        break;
      }
    }
    showSelection();
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
              totalCountIsEstimate
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
      if (bulk) {
        const cell = el("td", null, { class: "select" });
        cell.appendChild(
          el("input", null, {
            type: "checkbox",
            "data-select": node.id,
            "aria-label": t("admin.select_row", { name: fullName(node) }),
          }),
        );
        tr.appendChild(cell);
      }
      tr.appendChild(el("td", fullName(node), { class: "nowrap" }));
      tr.appendChild(el("td", node.email));
      tr.appendChild(el("td", whenShort(node.createdAt), { class: "nowrap" }));
      tr.appendChild(el("td", node.activeTokenCount, { class: "num" }));
      const locked = el("td", node.lockedUntil ? whenShort(node.lockedUntil) : "—", { class: "nowrap" });
      // A locked row offers Unlock in place (support and administrators).
      if (node.lockedUntil && admin.can("CUSTOMERS_REVOKE_TOKENS")) {
        const unlock = el("button", t("admin.unlock_customer"), {
          type: "button",
          class: "inline",
          "aria-label": t("admin.unlock_customer") + " — " + fullName(node),
        });
        unlock.addEventListener("click", async () => {
          await busy(unlock, async () => {
            try {
              await gql("mutation Unlock($id: ID!) { unlockCustomer(customerId: $id) }", { id: node.id }, admin.token);
              locked.textContent = "—";
              notify(t("admin.unlocked"), "ok");
            } catch (error) {
              notify(describe(error), "error");
            }
          });
        });
        locked.append(" ", unlock);
      }
      tr.appendChild(locked);
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
    (shownPage) => {
      page = shownPage;
      showSelection();
    },
  );

  async function run() {
    const query = new URLSearchParams();
    if (search.value.trim()) {
      query.set("search", search.value.trim());
    }
    for (const name of FILTER_FIELDS) {
      const value = document.getElementById(name).value.trim();
      if (value) {
        query.set(name, value);
      }
    }
    query.set("sort", sort.value);
    window.history.replaceState(null, "", "?" + query.toString());
    showFilterCount();
    shown = snapshot();
    // "Everything that matches" belonged to the previous query; checked customers stay.
    everything = null;
    await reload();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(event.submitter || form.querySelector("button[type=submit]"), run);
  });
  document.getElementById("clear-filters").addEventListener("click", async (event) => {
    for (const name of FILTER_FIELDS) {
      document.getElementById(name).value = "";
    }
    await busy(event.currentTarget, run);
  });

  if (bulk) {
    document.querySelector("#grid tbody").addEventListener("change", (event) => {
      const box = event.target.closest("input[data-select]");
      if (box) {
        pick([box.dataset.select], box.checked);
      }
    });
    document.getElementById("select-page").addEventListener("change", (event) => {
      pick(
        boxes().map((b) => b.dataset.select),
        event.currentTarget.checked,
      );
    });
    document.getElementById("select-all-matching").addEventListener("click", () => {
      everything = { filter: shown.filter, count: page.totalCount, estimate: page.totalCountIsEstimate };
      picked.clear();
      showSelection();
      document.getElementById("actions").focus();
    });
    document.getElementById("clear-selection").addEventListener("click", () => {
      everything = null;
      picked.clear();
      showSelection();
      document.getElementById("select-page").focus();
    });

    const dialog = document.getElementById("bulk-confirm");
    const actions = document.getElementById("actions");
    let chosen = null;
    const items = menuButton(actions, document.getElementById("actions-menu"), (action) => {
      chosen = action;
      const count = selectedCount();
      const estimate = Boolean(everything && everything.estimate);
      document.getElementById("bulk-confirm-title").textContent = t(ACTION_LABELS[action]);
      document.getElementById("bulk-confirm-text").textContent = tn("admin.bulk_confirm_" + action, count, {
        count: countText(count, estimate),
      });
      document.getElementById("bulk-confirm-note").textContent = everything
        ? t(estimate ? "admin.bulk_note_filter" : "admin.bulk_note_frozen")
        : "";
      dialog.returnValue = "";
      dialog.showModal();
      document.getElementById("bulk-cancel").focus();
    });
    if (!items) {
      // A role with CUSTOMERS_BULK but no action to take: nothing to select for.
      bulk.remove();
    }
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "ok") {
        actions.focus();
        return;
      }
      const selection = everything ? { filter: everything.filter } : { customerIds: [...picked] };
      await busy(actions, async () => {
        try {
          const data = await gql(
            `mutation StartBulk($action: BulkAction!, $selection: BulkSelection!) {
              startBulkAction(action: $action, selection: $selection) { id total }
            }`,
            { action: chosen, selection },
            admin.token,
          );
          sessionStorage.setItem(STARTED_JOB, JSON.stringify(data.startBulkAction));
          window.location.assign("/admin/jobs");
        } catch (error) {
          failed(error);
        }
      });
    });
  }

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
        customerById(id: $id) { id firstname lastname email locale createdAt activeTokenCount lockedUntil frozenAt reportedAt passwordChangedAt lastResetRequestedAt }
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
    // Recovery is offered only for an account that is frozen (and to an admin who may).
    if (recover) {
      recover.hidden = !customer.frozenAt || !admin.can("CUSTOMERS_RECOVER");
    }
    // Unlock is always offered (a name under attack may ask for a challenge with no lock
    // noted on the row).
    if (unlock) {
      unlock.hidden = !admin.can("CUSTOMERS_REVOKE_TOKENS");
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

  const unlock = document.getElementById("unlock-customer");
  if (unlock) {
    unlock.addEventListener("click", async () => {
      await busy(unlock, async () => {
        try {
          await gql("mutation Unlock($id: ID!) { unlockCustomer(customerId: $id) }", { id }, admin.token);
          notify(t("admin.unlocked"), "ok");
          await load();
        } catch (error) {
          failed(error);
        }
      });
    });
  }

  const recover = document.getElementById("recover-customer");
  if (recover) {
    recover.addEventListener("click", async () => {
      await busy(recover, async () => {
        try {
          await gql(
            "mutation Recover($id: ID!) { adminRecoverCustomer(customerId: $id) { id } }",
            { id },
            admin.token,
          );
          notify(t("admin.recovered"), "ok");
          await load();
        } catch (error) {
          failed(error);
        }
      });
    });
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

  const remove = document.getElementById("delete-customer");
  if (remove) {
    const confirmDelete = document.getElementById("delete-confirm");
    remove.addEventListener("click", () => {
      confirmDelete.returnValue = "";
      confirmDelete.showModal();
      document.getElementById("delete-cancel").focus();
    });
    confirmDelete.addEventListener("close", async () => {
      if (confirmDelete.returnValue !== "ok") {
        remove.focus();
        return;
      }
      await busy(remove, async () => {
        try {
          await gql("mutation Delete($id: ID!) { adminDeleteCustomer(customerId: $id) }", { id }, admin.token);
          for (const button of document.querySelectorAll(".page-actions button")) {
            button.remove();
          }
          document.getElementById("info").replaceChildren();
          notify(t("admin.deleted"), "ok");
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

  try {
    await load();
  } catch (error) {
    failed(error);
  }
}

const SETTINGS_FIELDS = [
  "resetLinkLifetimeHours",
  "resetCodeLifetimeMinutes",
  "resetByLink",
  "resetByCode",
  "signInByCode",
  "resetRequestLimitMethod",
  "maxResetRequestsPerHour",
  "minSecondsBetweenResetRequests",
  "minPasswordLength",
  "requiredCharacterClasses",
  "allowWhitespace",
  "minPasswordScore",
  "lockoutFailures",
  "lockoutMinutes",
  "customerTokenLifetimeMinutes",
  "adminTokenLifetimeMinutes",
  "maxFailedSignInsPerIpPerHour",
  "maxRegistrationsPerIpPerHour",
  "rememberBrowserDays",
  "lockoutNetworkPrefixV4",
  "lockoutNetworkPrefixV6",
  "challengeAfterNameFailures",
  "challengeAfterNetworkFailures",
  "challengeMaxNumber",
  "breachedPasswordSignIn",
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
              edges { node { id at actor action customerId clientIp detail } }
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
      tr.appendChild(el("td", node.detail || "—"));
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

const JOB_FIELDS = "id action status total processed failed startedAt finishedAt startedBy";

/** Bulk jobs, newest first, each with a progress bar that follows it while it runs; cancel. */
async function jobsPage(admin) {
  const rows = document.querySelector("#jobs tbody");
  const dialog = document.getElementById("cancel-confirm");
  let started = null;
  try {
    started = JSON.parse(sessionStorage.getItem(STARTED_JOB) || "null");
  } catch (e) {
    // Not ours: no notice.
  }
  sessionStorage.removeItem(STARTED_JOB);
  if (started) {
    notify(tn("admin.bulk_started", started.total), "ok");
  }
  let timer = null;
  let cancelling = null;

  /** Brings a job's row up to date: status, bar, counts, end, and Cancel while it runs. */
  function fill(tr, job) {
    tr.dataset.status = job.status;
    tr.querySelector(".status").textContent = t("admin.status_" + job.status);
    const bar = tr.querySelector("progress");
    const done = job.status !== "RUNNING";
    bar.max = Math.max(job.total, 1);
    bar.value = job.total ? job.processed : done ? 1 : 0;
    const counts = [t("admin.progress", { processed: number(job.processed), total: number(job.total) })];
    if (job.failed) {
      counts.push(t("admin.progress_failed", { failed: number(job.failed) }));
    }
    tr.querySelector(".counts").textContent = counts.join(" · ");
    tr.querySelector(".finished").textContent = job.finishedAt ? whenShort(job.finishedAt) : "—";
    const cancel = tr.querySelector("button.cancel-job");
    if (done && cancel) {
      if (document.activeElement === cancel) {
        document.getElementById("jobs").focus();
      }
      cancel.remove();
    }
    tr.dataset.total = job.total;
    tr.dataset.processed = job.processed;
  }

  function row(job) {
    const tr = el("tr", null, { "data-job": job.id });
    if (started && started.id === job.id) {
      tr.classList.add("new");
    }
    tr.appendChild(el("td", whenShort(job.startedAt), { class: "nowrap" }));
    tr.appendChild(el("td", t(ACTION_LABELS[job.action])));
    tr.appendChild(el("td", job.startedBy));
    const status = el("td");
    // Announced when it changes (Running to Finished); the moving counts are not.
    status.appendChild(el("span", null, { class: "status", "aria-live": "polite" }));
    tr.appendChild(status);
    const progress = el("td", null, { class: "progress" });
    progress.appendChild(
      el("progress", null, { "aria-label": t("admin.progress_label", { action: t(ACTION_LABELS[job.action]) }) }),
    );
    progress.appendChild(el("span", null, { class: "counts" }));
    tr.appendChild(progress);
    tr.appendChild(el("td", null, { class: "finished nowrap" }));
    const action = el("td");
    if (job.status === "RUNNING") {
      action.appendChild(el("button", t("admin.cancel_job"), { type: "button", class: "cancel-job" }));
    }
    tr.appendChild(action);
    fill(tr, job);
    return tr;
  }

  const running = () => [...rows.querySelectorAll("tr[data-status=RUNNING]")];

  function schedule() {
    if (!timer && running().length) {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  /** One request for every running job on the page (aliased `bulkJob` fields). */
  async function poll() {
    timer = null;
    const trs = running();
    if (!trs.length) {
      return;
    }
    const variables = {};
    const fields = trs.map((tr, i) => {
      variables["j" + i] = tr.dataset.job;
      return `j${i}: bulkJob(id: $j${i}) { ${JOB_FIELDS} }`;
    });
    const declared = trs.map((_, i) => `$j${i}: ID!`).join(", ");
    try {
      const data = await gql(`query Progress(${declared}) { ${fields.join(" ")} }`, variables, admin.token);
      trs.forEach((tr, i) => {
        const job = data["j" + i];
        if (job) {
          fill(tr, job);
        }
      });
    } catch (error) {
      if (error.code === "UNAUTHENTICATED" || error.code === "FORBIDDEN") {
        failed(error);
        return;
      }
      // A missed poll (a restart, the network): the next one catches up.
    }
    schedule();
  }

  const reload = pagedTable(
    "jobs",
    "admin.no_jobs",
    async (after) =>
      (
        await gql(
          `query Jobs($first: Int, $after: String) {
            bulkJobs(first: $first, after: $after) {
              totalCount
              pageInfo { hasNextPage endCursor }
              edges { node { ${JOB_FIELDS} } }
            }
          }`,
          { first: PAGE_SIZE, after },
          admin.token,
        )
      ).bulkJobs,
    row,
    schedule,
  );

  rows.addEventListener("click", (event) => {
    const button = event.target.closest("button.cancel-job");
    if (!button) {
      return;
    }
    cancelling = button.closest("tr");
    const remaining = Number(cancelling.dataset.total) - Number(cancelling.dataset.processed);
    document.getElementById("cancel-confirm-text").textContent = t("admin.cancel_confirm", {
      remaining: number(Math.max(remaining, 0)),
    });
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("cancel-keep").focus();
  });
  dialog.addEventListener("close", async () => {
    const tr = cancelling;
    const button = tr && tr.querySelector("button.cancel-job");
    if (dialog.returnValue !== "ok" || !button) {
      (button || document.getElementById("jobs")).focus();
      return;
    }
    await busy(button, async () => {
      try {
        const data = await gql(
          `mutation Cancel($id: ID!) { cancelBulkJob(id: $id) { ${JOB_FIELDS} } }`,
          { id: tr.dataset.job },
          admin.token,
        );
        const job = data.cancelBulkJob;
        fill(tr, job);
        notify(
          job.status === "CANCELLED"
            ? t("admin.cancelled", { processed: number(job.processed), total: number(job.total) })
            : t("admin.status_" + job.status),
          "ok",
        );
      } catch (error) {
        if (error.code === "NOT_FOUND") {
          notify(t("admin.job_gone"), "error");
        } else {
          failed(error);
        }
      }
    });
  });

  await reload();
}

// The invitation link: the token leaves the address bar at once and goes only in the body of
// setAdminPassword.
function setPasswordPage() {
  const token = new URLSearchParams(window.location.search).get("token");
  window.history.replaceState(null, "", window.location.pathname);
  const form = document.getElementById("set-password");
  const password = document.getElementById("password");
  const confirm = document.getElementById("confirm");
  const after = document.getElementById("after-set");
  function finish(key, kind) {
    form.hidden = true;
    notify(t(key), kind);
    after.hidden = false;
    document.getElementById("to-sign-in").focus();
  }
  if (!token) {
    finish("admin.set_password_incomplete", "error");
    return;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fieldError(password, null);
    fieldError(confirm, null);
    if (!requireNewPassword(password, confirm, "reset.mismatch")) {
      return;
    }
    await busy(form.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation SetPassword($token: String!, $password: String!) { setAdminPassword(token: $token, newPassword: $password) }",
          { token, password: password.value },
        );
        finish("admin.set_password_done", "ok");
      } catch (error) {
        switch (error.code) {
          case "PASSWORD_POLICY":
            showPolicyViolations(password, error, t("reset.policy"));
            break;
          case "RESET_TOKEN_EXPIRED":
            finish("admin.set_password_expired", "error");
            break;
          case "RESET_TOKEN_INVALID":
            finish("admin.set_password_invalid", "error");
            break;
          default:
            notify(describe(error), "error");
        }
      }
    });
  });
}

// Admin Users: invite, change a role, disable or enable, Force Sign In. The API refuses to
// demote or disable the last active administrator; the page says so.
// The page's "admin-confirm" dialog: `ask(title, text, action)` runs `action` on OK.
function confirmer(dialog) {
  let pending = null;
  dialog.addEventListener("close", async () => {
    const action = pending;
    pending = null;
    if (dialog.returnValue === "ok" && action) {
      await action();
    }
  });
  return (title, text, action) => {
    document.getElementById("admin-confirm-title").textContent = title;
    document.getElementById("admin-confirm-text").textContent = text;
    pending = action;
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("admin-confirm-cancel").focus();
  };
}

async function adminUsersPage(admin) {
  const tbody = document.querySelector("#admins tbody");
  const dialog = document.getElementById("admin-confirm");
  const ROLES = ["VIEWER", "SUPPORT", "ADMINISTRATOR"];
  // "Reset Two-Factor" asks for the acting admin's own password.
  const resetDialog = document.getElementById("reset-factors");
  const resetPassword = document.getElementById("reset-password");
  let resetting = null;
  resetDialog.addEventListener("close", async () => {
    const user = resetting;
    resetting = null;
    if (resetDialog.returnValue !== "ok" || !user) {
      return;
    }
    try {
      const data = await gql(
        "mutation ResetFactors($id: ID!, $password: String!) { resetAdminFactors(adminId: $id, password: $password) { revokedCount } }",
        { id: user.id, password: resetPassword.value },
        admin.token,
      );
      notify(t("admin.factors_reset", { username: user.username, count: data.resetAdminFactors.revokedCount }), "ok");
    } catch (error) {
      if (error.code === "AUTHENTICATION_FAILED") {
        notify(t("admin.wrong_password"), "error");
      } else {
        failed(error);
      }
    } finally {
      resetPassword.value = "";
      await load();
    }
  });

  function explain(error) {
    if (error.code === "BAD_USER_INPUT" && String(error.message).includes("last active administrator")) {
      notify(t("admin.last_administrator"), "error");
    } else {
      failed(error);
    }
  }

  async function update(user, change) {
    try {
      const data = await gql(
        "mutation Update($id: ID!, $role: AdminRole, $disabled: Boolean) { updateAdminUser(id: $id, role: $role, disabled: $disabled) { id } }",
        { id: user.id, ...change },
        admin.token,
      );
      notify(t("admin.admin_updated", { username: user.username }), "ok");
      return data;
    } catch (error) {
      explain(error);
      return null;
    } finally {
      await load();
    }
  }

  const ask = confirmer(dialog);

  async function load() {
    const data = await gql(
      "query Admins { adminUsers { id username email role disabled factors { name confirmed } } }",
      {},
      admin.token,
    );
    tbody.replaceChildren();
    for (const user of data.adminUsers) {
      const tr = el("tr");
      tr.dataset.username = user.username;
      tr.appendChild(el("td", user.username));
      tr.appendChild(el("td", user.email || "—"));
      const roleCell = el("td");
      const select = el("select", null, { "aria-label": t("admin.role") + ": " + user.username });
      for (const role of ROLES) {
        const option = el("option", t("admin.role_" + role.toLowerCase()), { value: role });
        option.selected = role === user.role;
        select.appendChild(option);
      }
      select.addEventListener("change", () => update(user, { role: select.value }));
      roleCell.appendChild(select);
      tr.appendChild(roleCell);
      tr.appendChild(el("td", t(user.disabled ? "admin.status_disabled" : "admin.status_active")));
      const factors = user.factors.filter((f) => f.confirmed).map((f) => f.name);
      tr.appendChild(el("td", factors.length ? factors.join(", ") : t("admin.factors_count_none")));
      const actions = el("td");
      const toggle = el("button", t(user.disabled ? "admin.enable" : "admin.disable"), { type: "button" });
      toggle.addEventListener("click", () => {
        if (user.disabled) {
          update(user, { disabled: false });
        } else {
          ask(t("admin.disable"), t("admin.disable_confirm", { username: user.username }), () =>
            update(user, { disabled: true }),
          );
        }
      });
      const force = el("button", t("admin.force_sign_in"), { type: "button" });
      force.addEventListener("click", () =>
        ask(t("admin.force_sign_in"), t("admin.force_confirm_admin", { username: user.username }), async () => {
          try {
            const data = await gql(
              "mutation ForceAdmin($id: ID!) { revokeAdminTokens(adminId: $id) { revokedCount } }",
              { id: user.id },
              admin.token,
            );
            notify(
              t("admin.admin_signed_out", { username: user.username, count: data.revokeAdminTokens.revokedCount }),
              "ok",
            );
          } catch (error) {
            failed(error);
          }
        }),
      );
      actions.appendChild(toggle);
      actions.appendChild(force);
      // Another admin's, for one who lost every factor (one's own are removed one by one on
      // the security page).
      if (factors.length && user.username !== admin.username) {
        const reset = el("button", t("admin.reset_factors"), { type: "button" });
        reset.addEventListener("click", () => {
          resetting = user;
          document.getElementById("reset-factors-text").textContent = t("admin.reset_factors_confirm", {
            username: user.username,
          });
          resetPassword.value = "";
          resetDialog.returnValue = "";
          resetDialog.showModal();
          resetPassword.focus();
        });
        actions.appendChild(reset);
      }
      tr.appendChild(actions);
      tbody.appendChild(tr);
    }
  }

  const form = document.getElementById("invite");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = document.getElementById("invite-username");
    const email = document.getElementById("invite-email");
    fieldError(username, null);
    fieldError(email, null);
    if (!username.value.trim()) {
      fieldError(username, t("common.required"));
      username.focus();
      return;
    }
    if (!looksLikeEmail(email.value.trim())) {
      fieldError(email, t("common.email_invalid"));
      email.focus();
      return;
    }
    await busy(form.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation Invite($username: String!, $email: String!, $role: AdminRole!) { createAdminUser(username: $username, email: $email, role: $role) { id } }",
          { username: username.value.trim(), email: email.value.trim(), role: document.getElementById("invite-role").value },
          admin.token,
        );
        notify(t("admin.invited", { email: email.value.trim() }), "ok");
        form.reset();
        await load();
      } catch (error) {
        failed(error);
      }
    });
  });

  try {
    await load();
  } catch (error) {
    failed(error);
  }
}

/** Whether every field is filled in; the first empty one is marked and focused (errors cleared). */
function filledIn(...inputs) {
  for (const input of inputs) {
    fieldError(input, null);
  }
  // A password is taken as typed; other fields without their surrounding spaces.
  const empty = inputs.find((input) => !(input.type === "password" ? input.value : input.value.trim()));
  if (empty) {
    fieldError(empty, t("common.required"));
    empty.focus();
    return false;
  }
  return true;
}

/** Whether this browser can make and use passkeys with the JSON forms of WebAuthn's options. */
function passkeysWork() {
  return Boolean(
    window.PublicKeyCredential &&
      PublicKeyCredential.parseCreationOptionsFromJSON &&
      PublicKeyCredential.parseRequestOptionsFromJSON,
  );
}

/**
 * Enrolling an authenticator app, on the security page and at a sign-in the store requires a
 * factor for: the scan form (the QR code the API draws, shown as an image of the page's own
 * making, so no markup is parsed; the key in groups of four; the code) and, once confirmed,
 * the recovery codes, shown once with Download and Print.
 */
let qrUrl = null;

function showScan(enrolment) {
  if (qrUrl) {
    URL.revokeObjectURL(qrUrl);
  }
  qrUrl = URL.createObjectURL(new Blob([enrolment.qrCodeSvg], { type: "image/svg+xml" }));
  document.getElementById("enrol-qr").src = qrUrl;
  // Typed with or without the spaces: apps ignore them.
  document.getElementById("enrol-key").textContent = enrolment.secret.match(/.{1,4}/g).join(" ");
  document.getElementById("enrol-confirm").hidden = false;
  const code = document.getElementById("enrol-code");
  code.value = "";
  fieldError(code, null);
  code.focus();
}

function hideScan() {
  document.getElementById("enrol-confirm").hidden = true;
  document.getElementById("enrol-qr").removeAttribute("src");
  document.getElementById("enrol-key").textContent = "";
  if (qrUrl) {
    URL.revokeObjectURL(qrUrl);
    qrUrl = null;
  }
}

/** The scan form's code, or null with the field marked when it cannot be one. */
function scannedCode() {
  const code = document.getElementById("enrol-code");
  fieldError(code, null);
  if (!/^\d{6}$/.test(code.value.trim())) {
    fieldError(code, t("admin.scan_wrong"));
    code.focus();
    return null;
  }
  return code.value.trim();
}

/** A wrong code at the scan form: said there, the field emptied for the next one. */
function scanRefused() {
  const code = document.getElementById("enrol-code");
  fieldError(code, t("admin.scan_wrong"));
  code.value = "";
  code.focus();
}

function showRecoveryCodes(codes, username, done) {
  const section = document.getElementById("recovery");
  const list = document.getElementById("recovery-codes");
  list.replaceChildren(...codes.map((c) => el("li", c)));
  document.getElementById("recovery-download").onclick = () => {
    const store = document.querySelector(".brand").firstChild.textContent.trim();
    const text = [t("admin.recovery_file", { username, store }), "", ...codes, ""].join("\n");
    const link = el("a", null, {
      href: URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" })),
      download: "recovery-codes.txt",
    });
    document.body.appendChild(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(link.href);
  };
  document.getElementById("recovery-print").onclick = () => {
    document.body.classList.add("printing-codes");
    window.print();
    document.body.classList.remove("printing-codes");
  };
  document.getElementById("recovery-done").onclick = () => {
    list.replaceChildren();
    section.hidden = true;
    done();
  };
  section.hidden = false;
  document.getElementById("recovery-title").focus();
}

/**
 * Two-factor authentication: the admin's authenticator apps (add: password, then the QR code
 * the API draws and a code to confirm; remove: password), their recovery codes (shown once,
 * to download or print) and a new set of them.
 */
async function securityPage(admin) {
  const tbody = document.querySelector("#factors tbody");
  const enrolForm = document.getElementById("enrol");
  const confirmForm = document.getElementById("enrol-confirm");
  const newCodes = document.getElementById("new-codes");
  const dialog = document.getElementById("factor-remove");
  const removePassword = document.getElementById("remove-password");
  let enrolment = null;
  let removing = null;

  async function load() {
    const data = await gql(
      "query Factors { currentAdmin { factors { id name createdAt confirmed lastUsedAt } recoveryCodesLeft deviceGrants { id userAgent createdAt lastUsedAt expiresAt } } }",
      {},
      admin.token,
    );
    const factors = data.currentAdmin.factors.filter((f) => f.confirmed);
    tbody.replaceChildren();
    for (const factor of factors) {
      const tr = el("tr");
      tr.dataset.name = factor.name;
      tr.appendChild(el("td", factor.name));
      tr.appendChild(el("td", whenShort(factor.createdAt)));
      tr.appendChild(el("td", whenShort(factor.lastUsedAt)));
      const cell = el("td");
      const remove = el("button", t("admin.remove_factor"), {
        type: "button",
        "aria-label": t("admin.remove_factor") + ": " + factor.name,
      });
      remove.addEventListener("click", () => {
        removing = factor;
        document.getElementById("factor-remove-text").textContent = t(
          factors.length === 1 ? "admin.remove_last" : "admin.remove_confirm",
          { name: factor.name },
        );
        removePassword.value = "";
        fieldError(removePassword, null);
        dialog.returnValue = "";
        dialog.showModal();
        removePassword.focus();
      });
      cell.appendChild(remove);
      tr.appendChild(cell);
      tbody.appendChild(tr);
    }
    document.getElementById("factors-wrap").hidden = factors.length === 0;
    document.getElementById("factors-none").hidden = factors.length > 0;
    const left = document.getElementById("recovery-left");
    left.hidden = factors.length === 0;
    left.textContent = t("admin.recovery_left", { count: data.currentAdmin.recoveryCodesLeft });
    newCodes.hidden = factors.length === 0;
    const grants = data.currentAdmin.deviceGrants;
    const grantRows = document.querySelector("#grants tbody");
    grantRows.replaceChildren();
    for (const grant of grants) {
      const tr = el("tr");
      tr.appendChild(el("td", grant.userAgent || "—"));
      tr.appendChild(el("td", whenShort(grant.createdAt)));
      tr.appendChild(el("td", whenShort(grant.lastUsedAt)));
      tr.appendChild(el("td", whenShort(grant.expiresAt)));
      const cell = el("td");
      const forget = el("button", t("admin.grant_revoke"), { type: "button" });
      forget.addEventListener("click", async () => {
        await busy(forget, async () => {
          try {
            await gql("mutation Forget($id: ID!) { revokeDeviceGrant(id: $id) }", { id: grant.id }, admin.token);
            notify(t("admin.grant_revoked"), "ok");
          } catch (error) {
            failed(error);
          }
        });
        await load();
      });
      cell.appendChild(forget);
      tr.appendChild(cell);
      grantRows.appendChild(tr);
    }
    document.getElementById("grants-card").hidden = grants.length === 0;
  }

  function showCodes(codes) {
    showRecoveryCodes(codes, admin.username, () => document.getElementById("page-title").focus());
  }

  function passwordRefused(input, error) {
    if (error.code === "AUTHENTICATION_FAILED") {
      fieldError(input, t("admin.wrong_password"));
      input.value = "";
      input.focus();
    } else {
      failed(error);
    }
  }

  enrolForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = document.getElementById("enrol-name");
    const password = document.getElementById("enrol-password");
    if (!filledIn(name, password)) {
      return;
    }
    await busy(enrolForm.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation Enrol($name: String!, $password: String!) { startTotpEnrolment(name: $name, password: $password) { factorId secret qrCodeSvg } }",
          { name: name.value.trim(), password: password.value },
          admin.token,
        );
        password.value = "";
        enrolment = data.startTotpEnrolment;
        enrolForm.hidden = true;
        showScan(enrolment);
      } catch (error) {
        if (error.code === "BAD_USER_INPUT") {
          fieldError(name, error.message.replace(/^name: /, ""));
          name.focus();
        } else {
          passwordRefused(password, error);
        }
      }
    });
  });

  confirmForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = scannedCode();
    if (!code) {
      return;
    }
    await busy(confirmForm.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation Confirm($id: ID!, $code: String!) { confirmTotpEnrolment(factorId: $id, code: $code) { factor { name } recoveryCodes } }",
          { id: enrolment.factorId, code },
          admin.token,
        );
        const confirmed = data.confirmTotpEnrolment;
        notify(t("admin.enrolled", { name: confirmed.factor.name }), "ok");
        hideScan();
        enrolForm.hidden = false;
        enrolForm.reset();
        enrolment = null;
        await load();
        if (confirmed.recoveryCodes) {
          showCodes(confirmed.recoveryCodes);
        }
      } catch (error) {
        if (error.code === "BAD_USER_INPUT") {
          scanRefused();
        } else {
          failed(error);
        }
      }
    });
  });

  // A passkey or a security key: the password, then the browser's own prompt.
  const passkeyForm = document.getElementById("passkey");
  passkeyForm.hidden = !passkeysWork();
  passkeyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = document.getElementById("passkey-name");
    const password = document.getElementById("passkey-password");
    if (!filledIn(name, password)) {
      return;
    }
    await busy(passkeyForm.querySelector("button[type=submit]"), async () => {
      let started;
      try {
        started = (
          await gql(
            "mutation Passkey($name: String!, $password: String!) { startPasskeyEnrolment(name: $name, password: $password) { challenge options } }",
            { name: name.value.trim(), password: password.value },
            admin.token,
          )
        ).startPasskeyEnrolment;
        password.value = "";
      } catch (error) {
        if (error.code === "BAD_USER_INPUT") {
          fieldError(name, error.message.replace(/^name: /, ""));
          name.focus();
        } else {
          passwordRefused(password, error);
        }
        return;
      }
      let credential;
      try {
        const options = PublicKeyCredential.parseCreationOptionsFromJSON(JSON.parse(started.options).publicKey);
        credential = await navigator.credentials.create({ publicKey: options });
      } catch (error) {
        fieldError(name, t("admin.passkey_cancelled"));
        return;
      }
      try {
        const data = await gql(
          "mutation PasskeyDone($challenge: String!, $credential: String!) { completePasskeyEnrolment(challenge: $challenge, credential: $credential) { factor { name } recoveryCodes } }",
          { challenge: started.challenge, credential: JSON.stringify(credential.toJSON()) },
          admin.token,
        );
        const done = data.completePasskeyEnrolment;
        notify(t("admin.enrolled", { name: done.factor.name }), "ok");
        passkeyForm.reset();
        await load();
        if (done.recoveryCodes) {
          showCodes(done.recoveryCodes);
        }
      } catch (error) {
        failed(error);
      }
    });
  });

  newCodes.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = document.getElementById("codes-password");
    if (!filledIn(password)) {
      return;
    }
    await busy(newCodes.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation NewCodes($password: String!) { generateRecoveryCodes(password: $password) }",
          { password: password.value },
          admin.token,
        );
        password.value = "";
        await load();
        showCodes(data.generateRecoveryCodes);
      } catch (error) {
        passwordRefused(password, error);
      }
    });
  });

  dialog.addEventListener("close", async () => {
    const factor = removing;
    removing = null;
    if (dialog.returnValue !== "ok" || !factor) {
      return;
    }
    try {
      await gql(
        "mutation Remove($id: ID!, $password: String!) { removeAdminFactor(factorId: $id, password: $password) }",
        { id: factor.id, password: removePassword.value },
        admin.token,
      );
      notify(t("admin.removed", { name: factor.name }), "ok");
    } catch (error) {
      if (error.code === "UNAUTHENTICATED") {
        failed(error);
      } else if (error.code === "AUTHENTICATION_FAILED") {
        notify(t("admin.wrong_password"), "error");
      } else if (error.code === "BAD_USER_INPUT") {
        notify(t("admin.last_factor"), "error");
      } else {
        notify(describe(error), "error");
      }
    } finally {
      removePassword.value = "";
    }
    await load();
  });

  try {
    await load();
  } catch (error) {
    failed(error);
  }
}

// "Forgot your password?": the same answer for every username.
function forgotPasswordPage() {
  const form = document.getElementById("admin-forgot");
  const username = document.getElementById("username");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fieldError(username, null);
    if (!username.value.trim()) {
      fieldError(username, t("common.required"));
      username.focus();
      return;
    }
    await busy(form.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation Forgot($username: String!) { requestAdminPasswordReset(username: $username) }",
          { username: username.value.trim() },
        );
        notify(t("admin.forgot_sent"), "ok");
      } catch (error) {
        notify(describe(error), "error");
      }
    });
  });
}

// Integrations: security-event receivers, each with its recent deliveries. A webhook's secret
// is shown once, when it is made or replaced.
async function integrationsPage(admin) {
  const form = document.getElementById("subscribe");
  const tbody = document.querySelector("#subscriptions tbody");
  const panel = document.getElementById("deliveries-panel");
  const deliveries = document.querySelector("#deliveries tbody");
  const dialog = document.getElementById("admin-confirm");
  let shown = null;

  function showSecret(secret) {
    document.getElementById("integration-secret").textContent = secret;
    document.getElementById("secret-panel").hidden = false;
  }

  const ask = confirmer(dialog);

  async function run(query, variables) {
    try {
      return await gql(query, variables, admin.token);
    } catch (error) {
      failed(error);
      return null;
    }
  }

  async function showDeliveries(sub) {
    shown = sub;
    const data = await run(
      "query Deliveries($id: ID!) { eventDeliveries(subscriptionId: $id, first: 50) { id eventType reason status attempts lastStatus lastError createdAt } }",
      { id: sub.id },
    );
    if (!data) {
      return;
    }
    document.getElementById("deliveries-title").textContent = t("admin.integration_deliveries_of", { name: sub.name });
    deliveries.replaceChildren();
    for (const d of data.eventDeliveries) {
      const tr = el("tr");
      tr.dataset.status = d.status;
      tr.appendChild(el("td", whenShort(d.createdAt)));
      tr.appendChild(el("td", t("admin.event_" + d.eventType.toLowerCase())));
      tr.appendChild(el("td", d.reason));
      tr.appendChild(el("td", t("admin.delivery_" + d.status.toLowerCase())));
      tr.appendChild(el("td", number(d.attempts)));
      tr.appendChild(el("td", d.lastError || (d.lastStatus ? "HTTP " + d.lastStatus : "—")));
      deliveries.appendChild(tr);
    }
    panel.hidden = false;
  }

  async function load() {
    const data = await run(
      "query Subscriptions { eventSubscriptions { id name url format enabled } }",
      {},
    );
    if (!data) {
      return;
    }
    tbody.replaceChildren();
    if (!data.eventSubscriptions.length) {
      const tr = el("tr");
      tr.appendChild(el("td", t("admin.integration_none"), { colspan: "5" }));
      tbody.appendChild(tr);
    }
    for (const sub of data.eventSubscriptions) {
      const tr = el("tr");
      tr.dataset.name = sub.name;
      tr.appendChild(el("td", sub.name));
      tr.appendChild(el("td", sub.url));
      tr.appendChild(el("td", t(sub.format === "SSF_SET" ? "admin.format_ssf_set" : "admin.format_standard_webhooks")));
      tr.appendChild(el("td", t(sub.enabled ? "admin.integration_enabled" : "admin.integration_disabled")));
      const actions = el("td");
      const button = (label, action) => {
        const b = el("button", t(label), { type: "button" });
        b.addEventListener("click", action);
        actions.appendChild(b);
      };
      button("admin.integration_deliveries", () => showDeliveries(sub));
      button("admin.integration_test", async () => {
        if (await run("mutation Test($id: ID!) { sendTestEvent(subscriptionId: $id) { id } }", { id: sub.id })) {
          notify(t("admin.integration_test_sent", { name: sub.name }), "ok");
          setTimeout(() => showDeliveries(sub), 1500);
        }
      });
      button(sub.enabled ? "admin.integration_pause" : "admin.integration_resume", async () => {
        await run(
          "mutation Toggle($id: ID!, $on: Boolean) { updateEventSubscription(id: $id, input: {enabled: $on}) { id } }",
          { id: sub.id, on: !sub.enabled },
        );
        await load();
      });
      button("admin.integration_replay", async () => {
        const data = await run("mutation Replay($id: ID!) { replayEventDeliveries(subscriptionId: $id) }", { id: sub.id });
        if (data) {
          notify(t("admin.integration_replayed", { count: number(data.replayEventDeliveries) }), "ok");
        }
      });
      if (sub.format === "STANDARD_WEBHOOKS") {
        button("admin.integration_rotate", () =>
          ask(t("admin.integration_rotate"), t("admin.integration_rotate_confirm", { name: sub.name }), async () => {
            const data = await run("mutation Rotate($id: ID!) { rotateEventSubscriptionSecret(id: $id) }", { id: sub.id });
            if (data) {
              showSecret(data.rotateEventSubscriptionSecret);
            }
          }),
        );
      }
      button("admin.integration_delete", () =>
        ask(t("admin.integration_delete"), t("admin.integration_delete_confirm", { name: sub.name }), async () => {
          if (await run("mutation Delete($id: ID!) { deleteEventSubscription(id: $id) }", { id: sub.id })) {
            notify(t("admin.integration_deleted", { name: sub.name }), "ok");
            if (shown && shown.id === sub.id) {
              panel.hidden = true;
            }
            await load();
          }
        }),
      );
      tr.appendChild(actions);
      tbody.appendChild(tr);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = document.getElementById("sub-name");
    const url = document.getElementById("sub-url");
    fieldError(name, null);
    fieldError(url, null);
    if (!name.value.trim()) {
      fieldError(name, t("common.required"));
      name.focus();
      return;
    }
    if (!url.value.trim()) {
      fieldError(url, t("common.required"));
      url.focus();
      return;
    }
    const eventTypes = [...form.querySelectorAll("input[name=event]:checked")].map((i) => i.value);
    const audience = document.getElementById("sub-audience").value.trim();
    await busy(form.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation Create($input: EventSubscriptionInput!) { createEventSubscription(input: $input) { subscription { id name } secret } }",
          {
            input: {
              name: name.value.trim(),
              url: url.value.trim(),
              format: document.getElementById("sub-format").value,
              eventTypes,
              includeEmail: document.getElementById("sub-email").checked,
              audience: audience || null,
            },
          },
          admin.token,
        );
        const created = data.createEventSubscription;
        notify(t("admin.integration_created", { name: created.subscription.name }), "ok");
        if (created.secret) {
          showSecret(created.secret);
        }
        form.reset();
        await load();
      } catch (error) {
        if (error.code === "BAD_USER_INPUT" && error.extensions.field === "url") {
          fieldError(url, error.message);
          url.focus();
        } else {
          failed(error);
        }
      }
    });
  });
  await load();
}

async function main() {
  const page = document.body.dataset.page;
  if (page === "admin-sign-in") {
    signInPage();
    return;
  }
  if (page === "admin-set-password") {
    setPasswordPage();
    return;
  }
  if (page === "admin-forgot-password") {
    forgotPasswordPage();
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
    "admin-jobs": jobsPage,
    "admin-users": adminUsersPage,
    "admin-security": securityPage,
    "admin-integrations": integrationsPage,
  };
  await (pages[page] || (() => {}))(admin);
}

start(main);
