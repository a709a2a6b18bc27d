// The storefront's account pages: sign in, "Forgot Your Password?", the "New Password" form
// from the emailed link, and the signed-in account page with the customer's devices.
import {
  t,
  gql,
  tokenStore,
  notify,
  fieldError,
  requireNewPassword,
  describe,
  showPolicyViolations,
  when,
  looksLikeEmail,
  el,
  busy,
  start,
} from "./common.js";

const customerToken = tokenStore("latchkey.customer");
// A message to show on the next page (for example after a session ended elsewhere).
const NEXT_NOTICE = "latchkey.notice";

function goToSignIn(noticeKey) {
  customerToken.clear();
  if (noticeKey) {
    sessionStorage.setItem(NEXT_NOTICE, noticeKey);
  }
  window.location.assign("/account/sign-in");
}

function showPendingNotice() {
  const key = sessionStorage.getItem(NEXT_NOTICE);
  if (key) {
    sessionStorage.removeItem(NEXT_NOTICE);
    notify(t(key), key === "reset.done" ? "ok" : "info");
  }
}

function requireEmail(input) {
  const value = input.value.trim();
  if (!value) {
    fieldError(input, t("common.required"));
  } else if (!looksLikeEmail(value)) {
    fieldError(input, t("common.email_invalid"));
  } else {
    fieldError(input, null);
    return value;
  }
  input.focus();
  return null;
}

function signInPage() {
  if (customerToken.get()) {
    window.location.replace("/account");
    return;
  }
  showPendingNotice();
  const form = document.getElementById("sign-in");
  const email = document.getElementById("email");
  const password = document.getElementById("password");
  signInByCode(form, email);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const address = requireEmail(email);
    if (!address) {
      return;
    }
    if (!password.value) {
      fieldError(password, t("common.required"));
      password.focus();
      return;
    }
    fieldError(password, null);
    await busy(form.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation SignIn($email: String!, $password: String!, $challengeSolution: String) { generateCustomerToken(email: $email, password: $password, challengeSolution: $challengeSolution) { token expiresAt passwordChangeRequired } }",
          { email: address, password: password.value },
        );
        customerToken.set(data.generateCustomerToken);
        // A password on the breached list: straight to changing it.
        window.location.assign(
          data.generateCustomerToken.passwordChangeRequired ? "/account/information#change-password" : "/account",
        );
      } catch (error) {
        if (error.code === "BAD_USER_INPUT") {
          fieldError(email, t("common.email_invalid"));
          email.focus();
          return;
        }
        password.value = "";
        notify(error.code === "AUTHENTICATION_FAILED" ? t("signin.failed") : describe(error), "error");
        password.focus();
      }
    });
  });
}

// "Email me a sign-in code", where the store allows it: the flow id stays in this page's memory
// (a reload asks again), and the code is sent with it in the body of the mutation.
function signInByCode(form, email) {
  const button = document.getElementById("email-code");
  const codeForm = document.getElementById("code-sign-in");
  const code = document.getElementById("code");
  let flowId = null;
  gql("query Methods { authMethods { signInByCode } }")
    .then((data) => {
      button.hidden = !data.authMethods.signInByCode;
    })
    .catch(() => {});
  button.addEventListener("click", async () => {
    const address = requireEmail(email);
    if (!address) {
      return;
    }
    await busy(button, async () => {
      try {
        const data = await gql(
          "mutation SignInCode($email: String!, $challengeSolution: String) { requestSignInCode(email: $email, challengeSolution: $challengeSolution) { flowId } }",
          { email: address },
        );
        flowId = data.requestSignInCode.flowId;
        form.hidden = true;
        codeForm.hidden = false;
        document.getElementById("code-intro").textContent = t("signin.code_sent", { email: address });
        code.focus();
      } catch (error) {
        notify(error.code === "BAD_USER_INPUT" ? t("common.email_invalid") : describe(error), "error");
      }
    });
  });
  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    fieldError(code, null);
    const digits = code.value.replace(/[\s-]/g, "");
    if (!digits) {
      fieldError(code, t("forgot.code_required"));
      code.focus();
      return;
    }
    await busy(codeForm.querySelector("button[type=submit]"), async () => {
      try {
        const data = await gql(
          "mutation SignInWithCode($flowId: String!, $code: String!) { signInWithCode(flowId: $flowId, code: $code) { token expiresAt } }",
          { flowId: flowId || "", code: digits },
        );
        customerToken.set(data.signInWithCode);
        window.location.assign("/account");
      } catch (error) {
        fieldError(code, error.code === "AUTHENTICATION_FAILED" ? t("forgot.code_invalid") : describe(error));
        code.focus();
      }
    });
  });
}

// "Forgot Your Password?". A store that resets by code gets a code form in this same tab: the
// flow id the request answers is kept in this tab's sessionStorage only (a new tab or another
// browser does not have it, so a code read out of the mailbox works nowhere else), and sent
// only in the body of the reset mutation.
const RESET_FLOW = "latchkey.reset-flow";

function keptFlow() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(RESET_FLOW) || "null");
    if (kept && typeof kept.flowId === "string" && Date.parse(kept.expiresAt) > Date.now()) {
      return kept;
    }
  } catch (e) {
    // Unreadable: as if there were none.
  }
  sessionStorage.removeItem(RESET_FLOW);
  return null;
}

function forgotPasswordPage() {
  const form = document.getElementById("forgot");
  const email = document.getElementById("email");
  const codeForm = document.getElementById("code-form");
  const haveCode = document.getElementById("have-code");
  let methods = { resetByLink: true, resetByCode: false, codeLength: 8, codeLifetimeMinutes: 15 };
  const ready = gql("query Methods { authMethods { resetByLink resetByCode codeLength codeLifetimeMinutes } }")
    .then((data) => {
      methods = data.authMethods;
      haveCode.hidden = !methods.resetByCode;
    })
    .catch(() => {});

  function showCodeForm(address) {
    form.hidden = true;
    codeForm.hidden = false;
    document.getElementById("code-intro").textContent = address
      ? t("forgot.code_intro", { email: address })
      : "";
    document.getElementById("code-hint").textContent = t("forgot.code_hint", {
      minutes: methods.codeLifetimeMinutes,
    });
    document.getElementById("code").focus();
  }

  const kept = keptFlow();
  if (kept) {
    ready.then(() => showCodeForm(kept.email));
  }
  haveCode.addEventListener("click", () => showCodeForm(null));
  // A new request starts over: the old flow dies with it anyway.
  document.getElementById("code-request-new").addEventListener("click", () => {
    sessionStorage.removeItem(RESET_FLOW);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const address = requireEmail(email);
    if (!address) {
      return;
    }
    await ready;
    await busy(form.querySelector("button[type=submit]"), async () => {
      try {
        if (methods.resetByCode) {
          const data = await gql(
            "mutation ForgotByCode($email: String!, $challengeSolution: String) { requestPasswordResetCode(email: $email, challengeSolution: $challengeSolution) { flowId expiresAt } }",
            { email: address },
          );
          const flow = data.requestPasswordResetCode;
          sessionStorage.setItem(
            RESET_FLOW,
            JSON.stringify({ flowId: flow.flowId, expiresAt: flow.expiresAt, email: address }),
          );
          showCodeForm(address);
          return;
        }
        await gql("mutation Forgot($email: String!, $challengeSolution: String) { requestPasswordReset(email: $email, challengeSolution: $challengeSolution) }", {
          email: address,
        });
        const box = notify(t("forgot.sent", { email: address }), "ok");
        box.appendChild(el("p")).appendChild(el("a", t("forgot.back"), { href: "/account/sign-in" }));
        form.hidden = true;
        box.focus();
      } catch (error) {
        if (error.code === "BAD_USER_INPUT") {
          fieldError(email, t("common.email_invalid"));
          email.focus();
        } else {
          notify(describe(error), "error");
        }
      }
    });
  });

  const code = document.getElementById("code");
  const password = document.getElementById("password");
  const confirm = document.getElementById("confirm");
  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const input of [code, password, confirm]) {
      fieldError(input, null);
    }
    const digits = code.value.replace(/[\s-]/g, "");
    if (!digits) {
      fieldError(code, t("forgot.code_required"));
      code.focus();
      return;
    }
    if (!requireNewPassword(password, confirm, "reset.mismatch")) {
      return;
    }
    const flow = keptFlow();
    await busy(codeForm.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation ResetByCode($flowId: String!, $code: String!, $password: String!) { resetPasswordWithCode(flowId: $flowId, code: $code, newPassword: $password) }",
          { flowId: flow ? flow.flowId : "", code: digits, password: password.value },
        );
        sessionStorage.removeItem(RESET_FLOW);
        customerToken.clear();
        codeForm.hidden = true;
        notify(t("reset.done"), "ok");
        document.getElementById("after-code").hidden = false;
        document.getElementById("to-sign-in").focus();
      } catch (error) {
        switch (error.code) {
          case "PASSWORD_POLICY":
            showPolicyViolations(password, error, t("reset.policy"));
            break;
          case "RESET_TOKEN_EXPIRED":
            sessionStorage.removeItem(RESET_FLOW);
            fieldError(code, t("forgot.code_expired"));
            code.focus();
            break;
          case "RESET_TOKEN_INVALID":
            fieldError(code, t("forgot.code_invalid"));
            code.focus();
            break;
          default:
            notify(describe(error), "error");
        }
      }
    });
  });
}

// A link's token (reset, email change) arrives in its query string. The address bar shows the
// page without it at once (the history entry is replaced, so Back, bookmarks and screenshots do
// not carry it; the browser's global history list may still have recorded the opened link). It
// waits in this tab's sessionStorage under `key` for at most 30 minutes, so a language switch
// does not lose it, and is sent only in the body of the page's mutation.
const RESET_TOKEN = "latchkey.reset-token";
const LINK_TOKEN_KEPT_MS = 30 * 60 * 1000;

function linkToken(key) {
  const fromLink = new URLSearchParams(window.location.search).get("token");
  if (fromLink) {
    sessionStorage.setItem(key, JSON.stringify({ token: fromLink, at: Date.now() }));
    window.history.replaceState(null, "", window.location.pathname);
    return fromLink;
  }
  try {
    const kept = JSON.parse(sessionStorage.getItem(key) || "null");
    if (kept && typeof kept.token === "string" && Date.now() - kept.at < LINK_TOKEN_KEPT_MS) {
      return kept.token;
    }
  } catch (e) {
    // Unreadable: as if there were none.
  }
  sessionStorage.removeItem(key);
  return null;
}

// "Confirm Your New Email Address" and "Stop the Email Address Change": one button, so a mail
// scanner that opens the link changes nothing; the token goes only in the mutation's body.
function emailLinkPage(mutation, doneKey) {
  return () => {
    const key = "latchkey.email-change-token";
    const token = linkToken(key);
    const form = document.getElementById("email-link");
    const after = document.getElementById("after-link");

    function finish(messageKey, kind) {
      sessionStorage.removeItem(key);
      form.hidden = true;
      notify(t(messageKey), kind);
      after.hidden = false;
      document.getElementById("to-sign-in").focus();
    }

    if (!token) {
      finish("email_change.incomplete", "error");
      return;
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await busy(form.querySelector("button[type=submit]"), async () => {
        try {
          await gql(mutation, { token });
          if (doneKey === "email_change.cancelled" || doneKey === "not_me.done") {
            // Every session of the account has ended, this browser's too.
            customerToken.clear();
          }
          finish(doneKey, "ok");
        } catch (error) {
          switch (error.code) {
            case "LINK_EXPIRED":
              finish("email_change.expired", "error");
              break;
            case "LINK_INVALID":
              finish("email_change.invalid", "error");
              break;
            case "BAD_USER_INPUT":
              finish("email_change.taken", "error");
              break;
            default:
              notify(describe(error), "error");
          }
        }
      });
    });
  };
}

function resetPasswordPage() {
  const token = linkToken(RESET_TOKEN);
  const form = document.getElementById("reset");
  const password = document.getElementById("password");
  const confirm = document.getElementById("confirm");
  const after = document.getElementById("after-reset");

  function finish(messageKey, kind, signInLink) {
    sessionStorage.removeItem(RESET_TOKEN);
    form.hidden = true;
    notify(t(messageKey), kind);
    after.hidden = false;
    document.getElementById("to-sign-in").hidden = !signInLink;
    document.getElementById("request-new").hidden = signInLink;
    (signInLink ? document.getElementById("to-sign-in") : document.getElementById("request-new")).focus();
  }

  if (!token) {
    finish("reset.incomplete", "error", false);
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
          "mutation Reset($token: String!, $password: String!) { resetPassword(resetPasswordToken: $token, newPassword: $password) }",
          { token, password: password.value },
        );
        customerToken.clear();
        finish("reset.done", "ok", true);
      } catch (error) {
        switch (error.code) {
          case "PASSWORD_POLICY":
            showPolicyViolations(password, error, t("reset.policy"));
            break;
          case "RESET_TOKEN_EXPIRED":
            finish("reset.expired", "error", false);
            break;
          case "RESET_TOKEN_INVALID":
            finish("reset.invalid", "error", false);
            break;
          default:
            notify(describe(error), "error");
        }
      }
    });
  });
}

// "Chrome on Linux" from a user-agent string; the whole string stays in the tooltip.
function describeDevice(userAgent) {
  if (!userAgent) {
    return t("account.unknown_device");
  }
  const browsers = [
    [/Edg\//, "Edge"],
    [/OPR\//, "Opera"],
    [/Firefox\//, "Firefox"],
    [/HeadlessChrome\//, "Headless Chrome"],
    [/Chrom(e|ium)\//, "Chrome"],
    [/Safari\//, "Safari"],
  ];
  const systems = [
    [/Android/, "Android"],
    [/iPhone|iPad|iPod/, "iOS"],
    [/Windows/, "Windows"],
    [/Mac OS X|Macintosh/, "macOS"],
    [/CrOS/, "ChromeOS"],
    [/Linux/, "Linux"],
  ];
  const browser = browsers.find(([pattern]) => pattern.test(userAgent));
  const system = systems.find(([pattern]) => pattern.test(userAgent));
  if (!browser && !system) {
    return userAgent.slice(0, 60);
  }
  return [browser && browser[1], system && system[1]].filter(Boolean).join(" · ");
}

function fullName(customer) {
  const lang = document.documentElement.lang;
  return lang === "ja" || lang === "ko"
    ? customer.lastname + " " + customer.firstname
    : customer.firstname + " " + customer.lastname;
}

async function accountPage() {
  const token = customerToken.get();
  if (!token) {
    goToSignIn(null);
    return;
  }
  showPendingNotice();
  const who = document.getElementById("who");
  const rows = document.querySelector("#sessions tbody");

  function failed(error) {
    if (error.code === "UNAUTHENTICATED") {
      goToSignIn("common.session_ended");
    } else {
      notify(describe(error), "error");
    }
  }

  async function load() {
    const data = await gql(
      "query Account { customer { firstname lastname email } customerSessions { id createdAt lastUsedAt expiresAt clientIp userAgent current } }",
      {},
      token,
    );
    who.textContent = t("account.signed_in_as", {
      name: fullName(data.customer),
      email: data.customer.email,
    });
    rows.textContent = "";
    for (const session of data.customerSessions) {
      const tr = el("tr", null, { "data-session": session.id });
      const device = el("td", null, { id: "device-" + session.id });
      device.appendChild(
        el("span", describeDevice(session.userAgent), { class: "ua", title: session.userAgent || "" }),
      );
      if (session.current) {
        device.appendChild(el("strong", t("account.this_device"), { class: "tag" }));
      }
      tr.appendChild(device);
      tr.appendChild(el("td", session.clientIp || "—"));
      tr.appendChild(el("td", when(session.createdAt)));
      tr.appendChild(el("td", when(session.lastUsedAt)));
      tr.appendChild(el("td", when(session.expiresAt)));
      const action = el("td");
      if (!session.current) {
        const button = el("button", t("account.sign_out_device"), {
          type: "button",
          class: "sign-out-device",
          "aria-describedby": "device-" + session.id,
        });
        button.addEventListener("click", () => signOutDevice(session.id, button));
        action.appendChild(button);
      }
      tr.appendChild(action);
      rows.appendChild(tr);
    }
  }

  async function signOutDevice(id, button) {
    await busy(button, async () => {
      try {
        await gql("mutation SignOutDevice($id: ID!) { revokeCustomerSession(id: $id) }", { id }, token);
        await load();
        notify(t("account.signed_out_device"), "ok");
        document.getElementById("sessions-title").focus();
      } catch (error) {
        failed(error);
      }
    });
  }

  document.getElementById("sign-out").addEventListener("click", async (event) => {
    await busy(event.currentTarget, async () => {
      try {
        await gql("mutation SignOut { revokeCustomerToken }", {}, token);
      } catch (error) {
        // Signed out already, or unreachable: either way forget the token here.
      }
      goToSignIn(null);
    });
  });

  document.getElementById("sessions-title").setAttribute("tabindex", "-1");
  try {
    await load();
  } catch (error) {
    failed(error);
  }
}

function requireText(input) {
  if (!input.value.trim()) {
    fieldError(input, t("common.required"));
    input.focus();
    return null;
  }
  fieldError(input, null);
  return input.value.trim();
}

// "Create New Customer Account": registers, then signs in and opens the account page.
function createAccountPage() {
  if (customerToken.get()) {
    window.location.replace("/account");
    return;
  }
  const form = document.getElementById("create");
  // The hint says what the live policy says (an operator may have hardened it).
  gql("query Policy { passwordPolicy { minLength requiredCharacterClasses allowWhitespace } }", {})
    .then(({ passwordPolicy: p }) => {
      const parts = [t("create.password_hint", { min: p.minLength })];
      if (!p.allowWhitespace) {
        parts.push(t("create.password_hint_spaces"));
      }
      if (p.requiredCharacterClasses > 0) {
        parts.push(t("create.password_hint_classes", { count: p.requiredCharacterClasses }));
      }
      document.getElementById("password-hint").textContent = parts.join(" ");
    })
    .catch(() => {});
  const fields = ["firstname", "lastname", "email", "password", "confirm"].map((id) => document.getElementById(id));
  const [firstname, lastname, email, password, confirm] = fields;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const f of fields) {
      fieldError(f, null);
    }
    const first = requireText(firstname);
    const last = first && requireText(lastname);
    const address = last && requireEmail(email);
    if (!address) {
      return;
    }
    if (!requireNewPassword(password, confirm, "create.mismatch")) {
      return;
    }
    await busy(form.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation Create($input: CreateCustomerInput!, $challengeSolution: String) { createCustomer(input: $input, challengeSolution: $challengeSolution) { id } }",
          {
            input: {
              firstname: first,
              lastname: last,
              email: address,
              password: password.value,
              locale: document.documentElement.lang,
            },
          },
        );
        const data = await gql(
          "mutation SignIn($email: String!, $password: String!, $challengeSolution: String) { generateCustomerToken(email: $email, password: $password, challengeSolution: $challengeSolution) { token expiresAt } }",
          { email: address, password: password.value },
        );
        customerToken.set(data.generateCustomerToken);
        window.location.assign("/account");
      } catch (error) {
        if (error.code === "PASSWORD_POLICY") {
          showPolicyViolations(password, error, t("create.policy"));
        } else if (error.code === "BAD_USER_INPUT" && error.extensions.field) {
          const input = document.getElementById(error.extensions.field);
          if (input) {
            fieldError(input, error.message.replace(/^[a-zA-Z]+: /, ""));
            input.focus();
          } else {
            notify(describe(error), "error");
          }
        } else {
          notify(describe(error), "error");
        }
      }
    });
  });
}

// "Account Information": names and language, the email change, deleting the account.
async function accountInformationPage() {
  const token = customerToken.get();
  if (!token) {
    goToSignIn(null);
    return;
  }
  function failed(error) {
    if (error.code === "UNAUTHENTICATED") {
      goToSignIn("common.session_ended");
    } else {
      notify(describe(error), "error");
    }
  }
  const firstname = document.getElementById("firstname");
  const lastname = document.getElementById("lastname");
  const locale = document.getElementById("locale");
  try {
    const data = await gql("query Me { customer { firstname lastname email locale passwordChangeRequired } }", {}, token);
    document.getElementById("breached-notice").hidden = !data.customer.passwordChangeRequired;
    firstname.value = data.customer.firstname;
    lastname.value = data.customer.lastname;
    locale.value = data.customer.locale;
    document.getElementById("current-email").textContent = data.customer.email;
  } catch (error) {
    failed(error);
    return;
  }

  const profile = document.getElementById("profile");
  profile.addEventListener("submit", async (event) => {
    event.preventDefault();
    const first = requireText(firstname);
    const last = first && requireText(lastname);
    if (!last) {
      return;
    }
    await busy(profile.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation Update($input: UpdateCustomerInput!) { updateCustomer(input: $input) { locale } }",
          { input: { firstname: first, lastname: last, locale: locale.value } },
          token,
        );
        notify(t("information.saved"), "ok");
      } catch (error) {
        failed(error);
      }
    });
  });

  const passwordForm = document.getElementById("password-change");
  const current = document.getElementById("password-current");
  const fresh = document.getElementById("password-new");
  const again = document.getElementById("password-confirm");
  passwordForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    fieldError(current, null);
    fieldError(fresh, null);
    fieldError(again, null);
    if (!current.value) {
      fieldError(current, t("common.required"));
      current.focus();
      return;
    }
    if (!requireNewPassword(fresh, again, "information.password_mismatch")) {
      return;
    }
    await busy(passwordForm.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation ChangePassword($current: String!, $new: String!) { changeCustomerPassword(currentPassword: $current, newPassword: $new) { passwordChangeRequired } }",
          { current: current.value, new: fresh.value },
          token,
        );
        passwordForm.reset();
        document.getElementById("breached-notice").hidden = true;
        notify(t("information.password_changed"), "ok");
      } catch (error) {
        if (error.code === "PASSWORD_POLICY") {
          showPolicyViolations(fresh, error, t("information.password_policy"));
        } else if (error.code === "AUTHENTICATION_FAILED") {
          fieldError(current, describe(error));
          current.focus();
        } else {
          failed(error);
        }
      }
    });
  });

  const change = document.getElementById("email-change");
  const newEmail = document.getElementById("new-email");
  const emailPassword = document.getElementById("email-password");
  change.addEventListener("submit", async (event) => {
    event.preventDefault();
    fieldError(emailPassword, null);
    const address = requireEmail(newEmail);
    if (!address) {
      return;
    }
    if (!emailPassword.value) {
      fieldError(emailPassword, t("common.required"));
      emailPassword.focus();
      return;
    }
    await busy(change.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation Change($email: String!, $password: String!) { requestCustomerEmailChange(newEmail: $email, currentPassword: $password) }",
          { email: address, password: emailPassword.value },
          token,
        );
        change.reset();
        notify(t("information.change_email_sent", { email: address }), "ok");
      } catch (error) {
        if (error.code === "BAD_USER_INPUT") {
          fieldError(newEmail, error.message.replace(/^[a-zA-Z]+: /, ""));
          newEmail.focus();
        } else if (error.code === "AUTHENTICATION_FAILED") {
          fieldError(emailPassword, describe(error));
          emailPassword.focus();
        } else {
          failed(error);
        }
      }
    });
  });

  const remove = document.getElementById("delete-account");
  const deletePassword = document.getElementById("delete-password");
  const dialog = document.getElementById("delete-confirm");
  remove.addEventListener("submit", (event) => {
    event.preventDefault();
    fieldError(deletePassword, null);
    if (!deletePassword.value) {
      fieldError(deletePassword, t("common.required"));
      deletePassword.focus();
      return;
    }
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("delete-cancel").focus();
  });
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "ok") {
      return;
    }
    await busy(remove.querySelector("button[type=submit]"), async () => {
      try {
        await gql(
          "mutation Delete($password: String!) { deleteCustomer(currentPassword: $password) }",
          { password: deletePassword.value },
          token,
        );
        goToSignIn("signin.account_deleted");
      } catch (error) {
        if (error.code === "AUTHENTICATION_FAILED") {
          fieldError(deletePassword, describe(error));
          deletePassword.focus();
        } else {
          failed(error);
        }
      }
    });
  });
}

const pages = {
  "sign-in": signInPage,
  "forgot-password": forgotPasswordPage,
  "reset-password": resetPasswordPage,
  "confirm-email": emailLinkPage(
    "mutation Confirm($token: String!) { confirmCustomerEmailChange(token: $token) }",
    "email_change.confirmed",
  ),
  "cancel-email-change": emailLinkPage(
    "mutation Cancel($token: String!) { cancelCustomerEmailChange(token: $token) }",
    "email_change.cancelled",
  ),
  "release-account": emailLinkPage(
    "mutation Release($token: String!) { releaseCustomerAccount(token: $token) }",
    "email_change.released",
  ),
  "not-me": emailLinkPage(
    "mutation NotMe($token: String!) { reportUnrecognizedActivity(token: $token) }",
    "not_me.done",
  ),
  unlock: emailLinkPage("mutation Unlock($token: String!) { unlockSignIn(token: $token) }", "unlock.done"),
  account: accountPage,
  "create-account": createAccountPage,
  "account-information": accountInformationPage,
};
start(pages[document.body.dataset.page] || (() => {}));
