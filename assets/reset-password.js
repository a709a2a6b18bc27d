// The "New Password" form. The token comes from the link's query string and is removed from
// the address bar at once, so it stays out of history, bookmarks and screenshots; it is sent
// only in the POST body of the resetPassword mutation.
(function () {
  "use strict";
  var token = new URLSearchParams(window.location.search).get("token");
  if (token) {
    window.history.replaceState(null, "", window.location.pathname);
  }
  var form = document.getElementById("reset-form");
  var message = document.getElementById("message");
  var button = form.querySelector("button");

  function say(text, items) {
    message.textContent = "";
    var p = document.createElement("p");
    p.textContent = text;
    message.appendChild(p);
    if (items && items.length) {
      var ul = document.createElement("ul");
      items.forEach(function (item) {
        var li = document.createElement("li");
        li.textContent = item;
        ul.appendChild(li);
      });
      message.appendChild(ul);
    }
  }

  if (!token) {
    form.hidden = true;
    say("This link is incomplete. Request a new password reset email from the sign-in page.");
    return;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var password = document.getElementById("password").value;
    var confirm = document.getElementById("confirm").value;
    if (password !== confirm) {
      say("The two passwords do not match.");
      document.getElementById("confirm").focus();
      return;
    }
    button.disabled = true;
    fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        query: "mutation($t: String!, $p: String!) { resetPassword(resetPasswordToken: $t, newPassword: $p) }",
        variables: { t: token, p: password }
      })
    })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (body.data && body.data.resetPassword) {
          form.hidden = true;
          say("Your password has been reset. You can now sign in with your new password.");
          return;
        }
        var error = (body.errors && body.errors[0]) || {};
        var ext = error.extensions || {};
        switch (ext.code) {
          case "PASSWORD_POLICY":
            say("Choose another password: it", (ext.violations || []).map(function (v) { return v.message; }));
            break;
          case "RESET_TOKEN_EXPIRED":
            form.hidden = true;
            say("This link has expired. Request a new password reset email.");
            break;
          case "RESET_TOKEN_INVALID":
            form.hidden = true;
            say("This link has already been used or replaced by a newer one. Request a new password reset email.");
            break;
          case "RATE_LIMITED":
            say("Too many attempts. Try again in " + (ext.retryAfterSeconds || 60) + " seconds.");
            break;
          default:
            say("Something went wrong. Please try again.");
        }
      })
      .catch(function () { say("The server could not be reached. Please try again."); })
      .then(function () { button.disabled = false; });
  });
})();
