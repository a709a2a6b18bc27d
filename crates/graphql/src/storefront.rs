//! Storefront operations: a customer's own account, sign-in and sessions.

use async_graphql::{Context, ID, Object};
use domain::accounts::CreateCustomerInput as NewCustomerInput;

use crate::{
    ApiError,
    context::{customer, request, services},
    types::{CreateCustomerInput, Customer, CustomerSession, CustomerToken, UpdateCustomerInput},
};

#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// The signed-in customer.
    async fn customer(&self, ctx: &Context<'_>) -> Result<Customer, ApiError> {
        Ok(Customer(customer(ctx).await?.customer))
    }

    /// Apollo Federation: a gateway resolves `Customer` references (`@key(fields: "id")`) here,
    /// with the caller's token forwarded. Only within the caller's rights: a customer token
    /// resolves its own customer only, an admin token with CUSTOMERS_READ any; anything else
    /// (no token, another customer, an admin without the permission) resolves to null.
    #[graphql(entity)]
    async fn find_customer_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<Customer>, ApiError> {
        let Ok(id) = uuid::Uuid::parse_str(id.as_str()) else {
            return Ok(None);
        };
        if let Ok(principal) = customer(ctx).await {
            return Ok((principal.customer.id == id).then_some(Customer(principal.customer)));
        }
        if crate::context::admin_with(ctx, domain::admin::Permission::CustomersRead)
            .await
            .is_ok()
        {
            // A gateway sends a whole page's references at once: one look-up for all of them.
            return crate::context::loaders(ctx)?
                .customers
                .load_one(id)
                .await
                .map(|found| found.map(Customer))
                .map_err(|e| ApiError::internal(&e));
        }
        Ok(None)
    }

    /// The password rules in force (no sign-in needed): what a registration or "New Password"
    /// form should say before the customer types. The same rules `createCustomer`,
    /// `resetPassword` and `changeCustomerPassword` apply (and explain, rule by rule, with
    /// PASSWORD_POLICY); breached and common passwords are refused besides.
    async fn password_policy(&self, ctx: &Context<'_>) -> Result<PasswordRules, ApiError> {
        let policy = services(ctx)?.accounts.password_policy().await?;
        Ok(PasswordRules {
            min_length: i32::try_from(policy.min_length).unwrap_or(i32::MAX),
            max_length: i32::try_from(domain::password::MAX_PASSWORD_CHARS).unwrap_or(i32::MAX),
            required_character_classes: i32::from(policy.required_character_classes),
            allow_whitespace: policy.allow_whitespace,
            min_score: i32::from(policy.min_score),
        })
    }

    /// How customers of this store get in besides their password (public: a page chooses its
    /// forms before anyone types): "Forgot Your Password?" by an emailed link
    /// (`requestPasswordReset`), by a code typed in the browser that asked
    /// (`requestPasswordResetCode`), or either; and sign-in by a mailed code
    /// (`requestSignInCode`).
    async fn auth_methods(&self, ctx: &Context<'_>) -> Result<crate::reset::AuthMethods, ApiError> {
        let (reset, sign_in_by_code) = services(ctx)?.resets.methods().await?;
        Ok(crate::reset::AuthMethods {
            reset_by_link: reset.by_link,
            reset_by_code: reset.by_code,
            sign_in_by_code,
            code_length: domain::reset::CODE_DIGITS as i32,
            code_lifetime_minutes: i32::try_from(reset.code_lifetime.num_minutes())
                .unwrap_or(i32::MAX),
        })
    }

    /// Everything Latchkey stores about a customer, as JSON (profile, sessions, reset links,
    /// email changes, mail, admin actions; never a hash, token or link). Without `customerId`:
    /// the signed-in customer's own. With it: an admin with CUSTOMERS_EXPORT, any customer's,
    /// audited as EXPORT_CUSTOMER_DATA. It reads every table: priced at 300 of the document's
    /// complexity budget of 500 (one export per document), and limited to 10 an hour per
    /// caller (RATE_LIMITED). Each list holds at most 500 entries, oldest first: when
    /// `page.more` is true, ask for the next `page` (each page is one export).
    #[graphql(complexity = 300)]
    async fn customer_data_export(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
        #[graphql(desc = "From 1 (the default).")] page: Option<i64>,
    ) -> Result<async_graphql::Json<domain::erasure::CustomerExport>, ApiError> {
        let erasure = &services(ctx)?.erasure;
        let page = domain::erasure::ExportPage::asked(page)?;
        let export = match customer_id {
            Some(id) => {
                let principal =
                    crate::context::admin_with(ctx, domain::admin::Permission::CustomersExport)
                        .await?;
                erasure
                    .export_as_admin(
                        &principal,
                        crate::admin::parse_id(&id)?,
                        page,
                        &request(ctx).client,
                    )
                    .await?
            }
            None => erasure.export_own(&customer(ctx).await?, page).await?,
        };
        Ok(async_graphql::Json(export))
    }

    /// Every device signed in to the customer's account, newest first.
    async fn customer_sessions(&self, ctx: &Context<'_>) -> Result<Vec<CustomerSession>, ApiError> {
        let principal = customer(ctx).await?;
        let sessions = services(ctx)?.accounts.sessions(&principal).await?;
        Ok(sessions
            .into_iter()
            .map(|s| CustomerSession::new(s, principal.session_id))
            .collect())
    }
}

/// The password rules in force (`passwordPolicy`).
#[derive(async_graphql::SimpleObject)]
#[graphql(name = "PasswordPolicy")]
pub struct PasswordRules {
    /// In characters (code points).
    pub min_length: i32,
    pub max_length: i32,
    /// How many of lower case, upper case, digits and other characters must appear (0–4).
    pub required_character_classes: i32,
    /// Whether spaces are allowed.
    pub allow_whitespace: bool,
    /// The least zxcvbn strength score (0–4; 0: no estimate).
    pub min_score: i32,
}

#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Registers a customer. The password must satisfy the password policy; errors list every
    /// broken rule under `extensions.violations`. While the client's network is under attack,
    /// CHALLENGE_REQUIRED until `challengeSolution` carries a solved challenge (see
    /// `generateCustomerToken`).
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
        challenge_solution: Option<String>,
    ) -> Result<Customer, ApiError> {
        let input = NewCustomerInput {
            email: input.email,
            firstname: input.firstname,
            lastname: input.lastname,
            password: input.password,
            locale: input.locale,
        };
        let client = &request(ctx).client;
        Ok(Customer(
            services(ctx)?
                .accounts
                .create_customer(input, client, challenge_solution.as_deref())
                .await?,
        ))
    }

    /// Signs in. A wrong password, an unknown email and a locked account all answer
    /// AUTHENTICATION_FAILED.
    ///
    /// While this email or the client's network is under attack (many wrong passwords, see
    /// the password settings), the answer is CHALLENGE_REQUIRED with a proof-of-work challenge
    /// in `extensions.challenge` (ALTCHA's format) before any password is checked: solve it
    /// and send the same call again with the solution (base64 JSON) as `challengeSolution`.
    /// Each solution works once, for ten minutes.
    async fn generate_customer_token(
        &self,
        ctx: &Context<'_>,
        email: String,
        #[graphql(secret)] password: String,
        challenge_solution: Option<String>,
    ) -> Result<CustomerToken, ApiError> {
        let client = request(ctx).client.clone();
        let issued = services(ctx)?
            .accounts
            .sign_in(&email, &password, client, challenge_solution.as_deref())
            .await?;
        Ok(CustomerToken {
            token: issued.token,
            expires_at: issued.expires_at,
            password_change_required: issued.password_change_required,
        })
    }

    /// Signs out the token this request was made with.
    async fn revoke_customer_token(&self, ctx: &Context<'_>) -> Result<bool, ApiError> {
        let principal = customer(ctx).await?;
        services(ctx)?.accounts.sign_out(&principal).await?;
        crate::context::customer_signed_out(ctx);
        Ok(true)
    }

    /// Changes the password. Every other device is signed out; this token stays valid.
    async fn change_customer_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] current_password: String,
        #[graphql(secret)] new_password: String,
    ) -> Result<Customer, ApiError> {
        let principal = customer(ctx).await?;
        let updated = services(ctx)?
            .accounts
            .change_password(
                &principal,
                &current_password,
                &new_password,
                &request(ctx).client,
            )
            .await?;
        Ok(Customer(updated))
    }

    /// Changes the signed-in customer's names and language (absent fields stay). The email
    /// address changes through `requestCustomerEmailChange`, the password through
    /// `changeCustomerPassword`.
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerInput,
    ) -> Result<Customer, ApiError> {
        let principal = customer(ctx).await?;
        let input = domain::accounts::UpdateCustomerInput {
            firstname: input.firstname,
            lastname: input.lastname,
            locale: input.locale,
        };
        Ok(Customer(
            services(ctx)?
                .accounts
                .update_profile(&principal, input)
                .await?,
        ))
    }

    /// Asks to move the account to `newEmail`; takes the current password
    /// (AUTHENTICATION_FAILED otherwise, counted like a sign-in). The new address gets a
    /// confirmation link, the current one a notice with a link that cancels the change and
    /// signs every device out. Nothing changes until the new address confirms. An address
    /// another account has is refused as `createCustomer` refuses it.
    async fn request_customer_email_change(
        &self,
        ctx: &Context<'_>,
        new_email: String,
        #[graphql(secret)] current_password: String,
    ) -> Result<bool, ApiError> {
        let principal = customer(ctx).await?;
        services(ctx)?
            .email_changes
            .request(
                &principal,
                &new_email,
                &current_password,
                &request(ctx).client,
            )
            .await?;
        Ok(true)
    }

    /// The new address's confirmation link: applies the change (once; LINK_INVALID after,
    /// LINK_EXPIRED past its lifetime) and voids outstanding reset links. Needs no sign-in:
    /// the link is the proof.
    async fn confirm_customer_email_change(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> Result<bool, ApiError> {
        services(ctx)?
            .email_changes
            .confirm(&token, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// The old address's "this wasn't me" link: cancels the change (or puts the old address
    /// back if it was confirmed already), signs every device out and voids reset links.
    async fn cancel_customer_email_change(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> Result<bool, ApiError> {
        services(ctx)?
            .email_changes
            .cancel(&token, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// The link mailed to the address a "this wasn't me" removed from an account (which froze
    /// it): that address agrees that the account goes back to the address it has now, and
    /// the account unfreezes there without waiting for the store's staff. Its password stays
    /// void (the owner chooses one with "Forgot Your Password?"). Works once, for 7 days,
    /// while the account is still frozen by that revert; LINK_INVALID / LINK_EXPIRED otherwise.
    async fn release_customer_account(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> Result<bool, ApiError> {
        services(ctx)?
            .email_changes
            .release(&token, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// Deletes the signed-in customer's account, with the current password (AUTHENTICATION_FAILED
    /// otherwise, counted like a sign-in): sessions, reset and email-change links, mail and
    /// everything else that names the customer go with it; the address can register again.
    async fn delete_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] current_password: String,
    ) -> Result<bool, ApiError> {
        let principal = customer(ctx).await?;
        services(ctx)?
            .erasure
            .delete_own_account(&principal, &current_password, &request(ctx).client)
            .await?;
        crate::context::customer_signed_out(ctx);
        Ok(true)
    }

    /// Signs out one device (an `id` from `customerSessions`).
    async fn revoke_customer_session(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let principal = customer(ctx).await?;
        services(ctx)?
            .accounts
            .revoke_session(&principal, id.as_str())
            .await?;
        // Compared as UUIDs: every spelling the revocation accepts counts.
        if domain::SessionId::parse(id.as_str()) == Some(principal.session_id) {
            crate::context::customer_signed_out(ctx);
        }
        Ok(true)
    }
}
