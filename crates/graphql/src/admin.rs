//! Admin operations ("Customers > All Customers", Edit, "Reset Password", "Force Sign In",
//! settings, audit log). Each is guarded by the permission its role grants (`domain::admin::Role::permissions`).

use async_graphql::{Context, ID, Object};
use domain::admin::{
    AuditCursor, AuditQuery, CustomerCursor, CustomerQuery, CustomerSortField as SortField,
    Permission, page_size,
};
use uuid::Uuid;

use crate::{
    ApiError,
    admin_types::{
        Admin, AdminRole, AdminToken, AuditEntryConnection, AuditEntryEdge, AuditLogFilter,
        CustomerConnection, CustomerEdge, CustomerFilter, CustomerSort, PageInfo, PasswordSettings,
        PasswordSettingsInput, RevokeAdminTokensResult, RevokeCustomerTokensResult, SortDirection,
        UndeliveredMail,
    },
    context::{admin, loaders, request, services},
    guard::RequirePermission,
    types::Customer,
};

/// An `ID` argument as a UUID; an id of another kind, or garbage, names nothing: NOT_FOUND.
pub(crate) fn parse_id(id: &ID) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.as_str()).map_err(|_| ApiError::from(domain::Error::NotFound))
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// The signed-in admin (any role): username, role and permissions. UNAUTHENTICATED without
    /// a live admin token.
    async fn current_admin(&self, ctx: &Context<'_>) -> Result<Admin, ApiError> {
        Ok(Admin::from(&admin(ctx).await?.admin))
    }

    /// Every admin user, by username.
    #[graphql(guard = "RequirePermission(Permission::AdminUsersManage)")]
    async fn admin_users(&self, ctx: &Context<'_>) -> Result<Vec<Admin>, ApiError> {
        Ok(services(ctx)?
            .admin_users
            .list()
            .await?
            .iter()
            .map(Admin::from)
            .collect())
    }

    /// The customers grid: search, created-date range, sort, cursor paging (`first` up to 100).
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        filter: Option<CustomerFilter>,
        sort: Option<CustomerSort>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<CustomerConnection, ApiError> {
        let filter = filter.unwrap_or_default();
        let (field, descending) = match sort {
            Some(s) => (SortField::from(s.field), s.direction == SortDirection::Desc),
            None => (SortField::CreatedAt, true),
        };
        let query = CustomerQuery {
            filter: filter.into_domain()?,
            field,
            descending,
            first: page_size(first.map(i64::from))?,
            after: after.as_deref().map(CustomerCursor::decode).transpose()?,
        };
        let page = services(ctx)?.admins.customers(&query).await?;
        // Prime the loaders with the whole page: one statement per admin-only field asked for.
        let node = ctx.look_ahead().field("edges").field("node");
        let ids: Vec<Uuid> = page.items.iter().map(|(_, c)| c.id).collect();
        let loaders = loaders(ctx)?;
        if node.field("activeTokenCount").exists() {
            loaders
                .token_counts
                .load_many(ids.iter().copied())
                .await
                .map_err(|e| ApiError::internal(&e))?;
        }
        if node.field("passwordState").exists() || node.field("externalId").exists() {
            loaders
                .password_facts
                .load_many(ids.iter().copied())
                .await
                .map_err(|e| ApiError::internal(&e))?;
        }
        if node.field("lastResetRequestedAt").exists() {
            loaders
                .last_resets
                .load_many(ids.iter().copied())
                .await
                .map_err(|e| ApiError::internal(&e))?;
        }
        let end_cursor = page.items.last().map(|(c, _)| c.clone());
        Ok(CustomerConnection {
            edges: page
                .items
                .into_iter()
                .map(|(cursor, c)| CustomerEdge {
                    cursor,
                    node: Customer(c),
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
            total_count: count(page.total_count),
            total_count_is_estimate: page.total_count_is_estimate,
        })
    }

    /// One customer (the Edit page); null when there is none with this id.
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn customer_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<Customer>, ApiError> {
        let Ok(id) = Uuid::parse_str(id.as_str()) else {
            return Ok(None);
        };
        Ok(services(ctx)?.accounts.customer(id).await?.map(Customer))
    }

    /// Mail not delivered yet, oldest first (`first` up to 100): messages waiting, being
    /// retried after an SMTP failure, and dead-lettered ones — never silently lost. `lane`
    /// narrows it to one lane (a bulk campaign's queue, or everything else).
    #[graphql(guard = "RequirePermission(Permission::SettingsRead)")]
    async fn undelivered_mail(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        lane: Option<crate::admin_types::MailLane>,
    ) -> Result<Vec<UndeliveredMail>, ApiError> {
        let first = page_size(first.map(i64::from))?;
        let admins = &services(ctx)?.admins;
        let now = admins.now();
        Ok(admins
            .undelivered_mail(first, lane.map(Into::into))
            .await?
            .into_iter()
            .map(|m| UndeliveredMail::at(m, now))
            .collect())
    }

    #[graphql(guard = "RequirePermission(Permission::SettingsRead)")]
    async fn password_settings(&self, ctx: &Context<'_>) -> Result<PasswordSettings, ApiError> {
        Ok(services(ctx)?.admins.settings().await?.into())
    }

    /// Who did what to which customer, newest first.
    #[graphql(guard = "RequirePermission(Permission::AuditRead)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditLogFilter>,
    ) -> Result<AuditEntryConnection, ApiError> {
        let filter = filter.unwrap_or_default();
        let query = AuditQuery {
            action: filter.action.map(Into::into),
            customer_id: match filter.customer_id {
                Some(id) => Some(parse_id(&id)?),
                None => None,
            },
            first: page_size(first.map(i64::from))?,
            after: after.as_deref().map(AuditCursor::decode).transpose()?,
        };
        let page = services(ctx)?.admins.audit_log(&query).await?;
        let end_cursor = page.items.last().map(|(c, _)| c.clone());
        Ok(AuditEntryConnection {
            edges: page
                .items
                .into_iter()
                .map(|(cursor, e)| AuditEntryEdge {
                    cursor,
                    node: e.into(),
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
            total_count: count(page.total_count),
        })
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// One-step admin sign-in, for an admin without a second factor. Wrong password, unknown
    /// username and a locked account all answer AUTHENTICATION_FAILED; the right password of
    /// an admin with a second factor answers SECOND_FACTOR_REQUIRED (sign in with
    /// `startAdminSignIn` and `completeAdminSignIn` instead).
    async fn generate_admin_token(
        &self,
        ctx: &Context<'_>,
        username: String,
        #[graphql(secret)] password: String,
    ) -> Result<AdminToken, ApiError> {
        let client = request(ctx).client.clone();
        let issued = services(ctx)?
            .factors
            .sign_in(&username, &password, client)
            .await?;
        Ok(AdminToken::from(issued))
    }

    /// Signs out the admin token this request was made with.
    async fn revoke_admin_token(&self, ctx: &Context<'_>) -> Result<bool, ApiError> {
        let principal = admin(ctx).await?;
        services(ctx)?.admins.sign_out(&principal).await?;
        Ok(true)
    }

    /// "Reset Password" on the customer's Edit page: emails the customer a reset link (the
    /// same mail as "Forgot Your Password?"). The admin never sees the link or a password.
    /// NOT_FOUND for an unknown customer; RATE_LIMITED when sent too often.
    #[graphql(guard = "RequirePermission(Permission::CustomersResetPassword)")]
    async fn admin_reset_password(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
    ) -> Result<bool, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&customer_id)?;
        services(ctx)?
            .resets
            .request_for_customer(&principal, id, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// "Force Sign In": revokes every live access token of the customer; each is refused on
    /// its next request. NOT_FOUND for an unknown customer.
    #[graphql(guard = "RequirePermission(Permission::CustomersRevokeTokens)")]
    async fn revoke_customer_tokens(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
    ) -> Result<RevokeCustomerTokensResult, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&customer_id)?;
        let revoked = services(ctx)?
            .admins
            .revoke_customer_tokens(&principal, id, &request(ctx).client)
            .await?;
        Ok(RevokeCustomerTokensResult {
            revoked_count: count(revoked),
        })
    }

    /// "Unlock": clears the customer's sign-in lockout from every network, and the
    /// proof-of-work challenge their name asks for while under attack (their wrong passwords
    /// stop counting). For a customer who calls support because they cannot sign in. Audited
    /// as UNLOCK_CUSTOMER. NOT_FOUND for an unknown customer.
    #[graphql(guard = "RequirePermission(Permission::CustomersRevokeTokens)")]
    async fn unlock_customer(&self, ctx: &Context<'_>, customer_id: ID) -> Result<bool, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&customer_id)?;
        services(ctx)?
            .admins
            .unlock_customer(&principal, id, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// Recovers an account frozen by "this wasn't me" (a confirmed email change was reverted,
    /// so neither mailbox alone gets the account back), once the admin has checked who owns
    /// the account. It is unfrozen at its current address, or moved to `email`. The password
    /// stays void; send a reset link next ("Reset Password"). Audited as RECOVER_CUSTOMER.
    /// BAD_USER_INPUT when the account is not frozen or `email` belongs to another account.
    #[graphql(guard = "RequirePermission(Permission::CustomersRecover)")]
    async fn admin_recover_customer(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        email: Option<String>,
    ) -> Result<Customer, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&customer_id)?;
        let customer = services(ctx)?
            .email_changes
            .recover(&principal, id, email.as_deref(), &request(ctx).client)
            .await?;
        Ok(Customer(customer))
    }

    /// Deletes a customer account and everything that names the customer (as
    /// `deleteCustomer` does); the audit log keeps the id. NOT_FOUND for an unknown customer.
    #[graphql(guard = "RequirePermission(Permission::CustomersDelete)")]
    async fn admin_delete_customer(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
    ) -> Result<bool, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&customer_id)?;
        services(ctx)?
            .erasure
            .delete_by_admin(&principal, id, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// Invites an admin: `email` gets a link to set their own password (nobody else ever types
    /// it).
    #[graphql(guard = "RequirePermission(Permission::AdminUsersManage)")]
    async fn create_admin_user(
        &self,
        ctx: &Context<'_>,
        username: String,
        email: String,
        role: AdminRole,
    ) -> Result<Admin, ApiError> {
        let role = domain::admin::Role::from(role).as_str();
        let principal = admin(ctx).await?;
        let created = services(ctx)?
            .admin_users
            .invite(&principal, &username, &email, role, &request(ctx).client)
            .await?;
        Ok(Admin::from(&created))
    }

    /// Changes an admin's role or disables (signing them out) or enables them. The last active
    /// administrator cannot be demoted or disabled (BAD_USER_INPUT, nothing changes).
    #[graphql(guard = "RequirePermission(Permission::AdminUsersManage)")]
    async fn update_admin_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        role: Option<AdminRole>,
        disabled: Option<bool>,
    ) -> Result<Admin, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&id)?;
        let updated = services(ctx)?
            .admin_users
            .update(
                &principal,
                id,
                role.map(|r| domain::admin::Role::from(r).as_str()),
                disabled,
                &request(ctx).client,
            )
            .await?;
        Ok(Admin::from(&updated))
    }

    /// Force Sign In for an admin: every live admin token of theirs is refused from the next
    /// request.
    #[graphql(guard = "RequirePermission(Permission::AdminUsersManage)")]
    async fn revoke_admin_tokens(
        &self,
        ctx: &Context<'_>,
        admin_id: ID,
    ) -> Result<RevokeAdminTokensResult, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&admin_id)?;
        let revoked = services(ctx)?
            .admin_users
            .revoke_tokens(&principal, id, &request(ctx).client)
            .await?;
        Ok(RevokeAdminTokensResult {
            revoked_count: count(revoked),
        })
    }

    /// The console's "Forgot your password?": mails a link to set a new password to the admin
    /// with this username, if there is an active one with an email address. Always `true` (the
    /// same answer and the same statements for every username); RATE_LIMITED past 5 an hour
    /// per client address or per username.
    async fn request_admin_password_reset(
        &self,
        ctx: &Context<'_>,
        username: String,
    ) -> Result<bool, ApiError> {
        services(ctx)?
            .admin_users
            .request_reset(&username, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// The invitation link: the invited admin sets their password (at least 12 characters and
    /// the password policy). Works once; RESET_TOKEN_INVALID / RESET_TOKEN_EXPIRED otherwise.
    /// Needs no sign-in.
    async fn set_admin_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
        #[graphql(secret)] new_password: String,
    ) -> Result<bool, ApiError> {
        services(ctx)?
            .admin_users
            .set_password(&token, &new_password, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// Changes settings; effective at once on every server.
    #[graphql(guard = "RequirePermission(Permission::SettingsManage)")]
    async fn update_password_settings(
        &self,
        ctx: &Context<'_>,
        input: PasswordSettingsInput,
    ) -> Result<PasswordSettings, ApiError> {
        let principal = admin(ctx).await?;
        let updated = services(ctx)?
            .admins
            .update_settings(&principal, &input.into(), &request(ctx).client)
            .await?;
        Ok(updated.into())
    }
}
