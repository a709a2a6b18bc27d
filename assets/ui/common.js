// Shared by the storefront and admin pages: labels, the GraphQL client, and small DOM helpers.
// Everything these pages do goes through the public GraphQL API, as any client would.

const messages = JSON.parse(document.body.dataset.messages || "{}");

/** The label at `path` ("signin.failed") in the page's language, with `{name}` filled in. */
export function t(path, params) {
  let value = path.split(".").reduce((node, key) => (node ? node[key] : undefined), messages);
  if (typeof value !== "string") {
    value = path;
  }
  return value.replace(/\{(\w+)\}/g, (whole, name) =>
    params && params[name] !== undefined ? String(params[name]) : whole,
  );
}

const plurals = new Intl.PluralRules(document.documentElement.lang);
const numbers = new Intl.NumberFormat(document.documentElement.lang);

/** A count for people: grouped digits in the page's language (1,234 / 1,234 / 1,234). */
export function number(n) {
  return numbers.format(n);
}

/**
 * The label at `path` for `count` things: `path_one` where the language says "one" and that
 * label exists, else `path`. `{count}` is filled in formatted, unless `params` gives its own.
 */
export function tn(path, count, params) {
  const one = path + "_one";
  const key = plurals.select(count) === "one" && t(one) !== one ? one : path;
  return t(key, { count: number(count), ...params });
}

/** A GraphQL error: `code` is the server's error code (`extensions.code`), or NETWORK when the server was not reached. */
export class GraphQLError extends Error {
  constructor(code, message, extensions) {
    super(message);
    this.code = code;
    this.extensions = extensions || {};
  }
}

/**
 * Runs one operation; resolves to `data`, rejects with a GraphQLError. An operation that takes
 * a `$challengeSolution` variable and is answered CHALLENGE_REQUIRED (the store is under
 * attack) is solved here and sent once more with the solution: the visitor only waits a moment.
 */
export async function gql(query, variables, token) {
  try {
    return await post(query, variables, token);
  } catch (error) {
    if (error.code !== "CHALLENGE_REQUIRED" || !error.extensions.challenge || !query.includes("$challengeSolution")) {
      throw error;
    }
    const challengeSolution = await solveChallenge(error.extensions.challenge);
    return post(query, { ...(variables || {}), challengeSolution }, token);
  }
}

async function post(query, variables, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) {
    headers.Authorization = "Bearer " + token;
  }
  let body;
  try {
    const response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables: variables || {} }),
      credentials: "omit",
      cache: "no-store",
    });
    body = await response.json();
  } catch (e) {
    throw new GraphQLError("NETWORK", String(e));
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const extensions = first.extensions || {};
    throw new GraphQLError(extensions.code || "INTERNAL_SERVER_ERROR", first.message, extensions);
  }
  return body.data;
}

/**
 * Solves a proof-of-work challenge (ALTCHA's format): finds the number whose SHA-256, after
 * the salt, is the challenge, and answers the solution as the server expects it (base64 JSON).
 * Hashes in batches with the browser's own SHA-256.
 */
export async function solveChallenge(challenge) {
  const encoder = new TextEncoder();
  const target = new Uint8Array(challenge.challenge.match(/../g).map((h) => parseInt(h, 16)));
  const same = (digest) => {
    const bytes = new Uint8Array(digest);
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== target[i]) {
        return false;
      }
    }
    return true;
  };
  const batch = 500;
  for (let start = 0; start <= challenge.maxnumber; start += batch) {
    const end = Math.min(start + batch - 1, challenge.maxnumber);
    const numbers = [];
    for (let n = start; n <= end; n++) {
      numbers.push(n);
    }
    const digests = await Promise.all(numbers.map((n) => crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + n))));
    const found = digests.findIndex(same);
    if (found >= 0) {
      const payload = {
        algorithm: challenge.algorithm,
        challenge: challenge.challenge,
        number: numbers[found],
        salt: challenge.salt,
        signature: challenge.signature,
      };
      return btoa(JSON.stringify(payload));
    }
  }
  throw new GraphQLError("CHALLENGE_REQUIRED", "the challenge has no solution");
}

/** A token kept for this browser tab only (sessionStorage), with its expiry. */
export function tokenStore(key) {
  return {
    get() {
      try {
        const saved = JSON.parse(sessionStorage.getItem(key) || "null");
        if (saved && saved.token && Date.parse(saved.expiresAt) > Date.now()) {
          return saved.token;
        }
      } catch (e) {
        // Unreadable: treat as signed out.
      }
      sessionStorage.removeItem(key);
      return null;
    },
    set(issued) {
      sessionStorage.setItem(key, JSON.stringify(issued));
    },
    clear() {
      sessionStorage.removeItem(key);
    },
  };
}

/**
 * Shows a message in the page's live region (`#notice`, always present so screen readers hear
 * the first message too): kind is "ok", "error" (announced at once, role="alert") or "info".
 */
export function notify(text, kind, items) {
  const region = document.getElementById("notice");
  region.textContent = "";
  if (!text) {
    return null;
  }
  const box = el("div", null, { class: "notice " + (kind || "info"), tabindex: "-1" });
  if (kind === "error") {
    box.setAttribute("role", "alert");
  }
  box.appendChild(el("p", text));
  if (items && items.length) {
    const ul = el("ul");
    for (const item of items) {
      ul.appendChild(el("li", item));
    }
    box.appendChild(ul);
  }
  region.appendChild(box);
  return box;
}

/** Marks a field invalid with its message (or clears it with null). */
export function fieldError(input, text) {
  const box = document.getElementById(input.id + "-error");
  if (text) {
    input.setAttribute("aria-invalid", "true");
    box.textContent = text;
    box.hidden = false;
  } else {
    input.removeAttribute("aria-invalid");
    box.textContent = "";
    box.hidden = true;
  }
}

/**
 * The new-password pair of a form: filled in, and typed alike twice. Marks the first field
 * that is not (the password: required; the confirmation: `mismatchKey`), moves the focus there
 * and answers false; true when the pair may be sent.
 */
export function requireNewPassword(password, confirm, mismatchKey) {
  if (!password.value) {
    fieldError(password, t("common.required"));
    password.focus();
    return false;
  }
  if (password.value !== confirm.value) {
    fieldError(confirm, t(mismatchKey));
    confirm.focus();
    return false;
  }
  return true;
}

/** A PASSWORD_POLICY refusal under the password field: `intro`, then each broken rule. */
export function showPolicyViolations(password, error, intro) {
  fieldError(password, intro);
  const list = el("ul");
  for (const rule of policyViolations(error)) {
    list.appendChild(el("li", rule));
  }
  document.getElementById(password.id + "-error").appendChild(list);
  password.focus();
}

/** The message a user should read for an error no page handles specially. */
export function describe(error) {
  switch (error.code) {
    case "NETWORK":
      return t("common.network");
    case "RATE_LIMITED":
      return t("common.rate_limited", { seconds: error.extensions.retryAfterSeconds || 60 });
    case "FORBIDDEN":
      return t("common.forbidden");
    case "UNAUTHENTICATED":
      return t("common.session_ended");
    default:
      return t("common.generic");
  }
}

/** The password rules a PASSWORD_POLICY error lists, in the page's language. */
export function policyViolations(error) {
  return (error.extensions.violations || []).map((v) => {
    const label = t("policy." + v.rule, { limit: v.limit });
    return label === "policy." + v.rule ? v.message : label;
  });
}

const dateFormat = new Intl.DateTimeFormat(document.documentElement.lang, {
  dateStyle: "medium",
  timeStyle: "short",
});

const shortFormat = new Intl.DateTimeFormat(document.documentElement.lang, {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
});

/** A timestamp for people, in the page's language; "never" for null. */
export function when(iso) {
  return iso ? dateFormat.format(new Date(iso)) : t("common.never");
}

/** The same, compact, for table cells. */
export function whenShort(iso) {
  return iso ? shortFormat.format(new Date(iso)) : t("common.never");
}

/** A plausible address: the server decides; this only catches typing slips early. */
export function looksLikeEmail(value) {
  return /^[^\s@]+@[^\s@]+$/.test(value);
}

/** Creates an element with text and attributes. */
export function el(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, value);
  }
  return node;
}

/**
 * Runs a page's script and then marks the page ready (`data-ready` on `<body>`) whatever
 * happened, so tests and tools can tell a finished page from a loading one.
 */
export function start(page) {
  Promise.resolve()
    .then(page)
    .catch((error) => notify(describe(error), "error"))
    .finally(() => {
      document.body.dataset.ready = "true";
    });
}

/** Disables a form's submit button while `work` runs. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
