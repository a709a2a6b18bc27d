//! Managing factors: removing one, new recovery codes, and the reset of a lost factor by an
//! administrator or an operator.

use super::*;

impl AdminFactors {
    /// Removes one of the admin's own factors, after their password. With the last confirmed
    /// factor go the recovery codes; where the store requires a factor the last one stays
    /// (checked again in the removal's transaction, so two removals at once cannot take the
    /// last two), and where it does not the admin signs in with the password alone again.
    #[tracing::instrument(name = "factors.remove", skip_all)]
    pub async fn remove(
        &self,
        principal: &AdminPrincipal,
        factor_id: Uuid,
        password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let factors = self.store.factors(principal.admin.id).await?;
        let Some(factor) = factors.iter().find(|f| f.id == factor_id) else {
            return Err(Error::NotFound);
        };
        let last = || {
            Error::bad_input(
                "factorId",
                "this store requires a second factor: add another before removing the last",
            )
        };
        let keep_one = self.policy == FactorPolicy::Required;
        let confirmed = factors.iter().filter(|f| f.confirmed_at.is_some()).count();
        if keep_one && factor.confirmed_at.is_some() && confirmed == 1 {
            return Err(last());
        }
        self.confirm_password(principal, password, client).await?;
        let audit = NewAudit::by(
            principal,
            AuditAction::RemoveAdminFactor,
            self.parts.clock.now(),
            client,
        )
        .detail(format!("factor {factor_id}"));
        match self
            .store
            .remove_factor(principal.admin.id, factor_id, keep_one, audit)
            .await?
        {
            Removal::Removed => {}
            Removal::NotFound => return Err(Error::NotFound),
            Removal::LastKept => return Err(last()),
        }
        tracing::info!(event = "admin_factor_removed", admin_id = %principal.admin.id, factor_id = %factor_id);
        Ok(())
    }

    /// A new set of recovery codes (the old ones stop working), for an admin with a confirmed
    /// factor, after their password.
    #[tracing::instrument(name = "factors.new_recovery_codes", skip_all)]
    pub async fn new_recovery_codes(
        &self,
        principal: &AdminPrincipal,
        password: &str,
        client: &ClientInfo,
    ) -> Result<Vec<RecoveryCode>> {
        let admin_id = principal.admin.id;
        if !self.has_confirmed_factor(admin_id).await? {
            return Err(Error::bad_input(
                "factors",
                "enrol an authenticator app first: recovery codes stand in for a factor",
            ));
        }
        self.confirm_password(principal, password, client).await?;
        let now = self.parts.clock.now();
        let audit = NewAudit::by(principal, AuditAction::NewRecoveryCodes, now, client);
        self.issue_recovery_codes(admin_id, now, Some(audit)).await
    }

    /// "Reset Two-Factor Authentication" on the Admin Users page, for an admin who lost every
    /// factor and recovery code, after the acting admin's password: removes all of
    /// `admin_id`'s factors and codes and ends their sessions; they are mailed, and their next sign-in enrols a factor again (where the store
    /// requires one). Audited as RESET_ADMIN_FACTORS. Not for one's own factors
    /// (BAD_USER_INPUT: those are removed one by one, after the password); NOT_FOUND for no
    /// such admin. The sessions ended, how many.
    #[tracing::instrument(name = "factors.reset_for", skip_all)]
    pub async fn reset_for(
        &self,
        principal: &AdminPrincipal,
        admin_id: Uuid,
        password: &str,
        client: &ClientInfo,
    ) -> Result<u64> {
        if !principal.admin.role.allows(Permission::AdminUsersManage) {
            return Err(Error::Forbidden);
        }
        if principal.admin.id == admin_id {
            return Err(Error::bad_input(
                "adminId",
                "your own factors are removed one by one, after your password",
            ));
        }
        let target = self.store.admin(admin_id).await?.ok_or(Error::NotFound)?;
        // The acting administrator's password again: a stolen administrator token alone must
        // not strip another admin's factors.
        self.confirm_password(principal, password, client).await?;
        let now = self.parts.clock.now();
        let audit = NewAudit::by(principal, AuditAction::ResetAdminFactors, now, client)
            .detail(format!("admin {admin_id}"));
        self.reset(&target, now, audit).await
    }

    /// The same reset by an operator (`latchkey admin reset-2fa USERNAME`), for the last
    /// administrator who lost everything; `actor` names the OS user (`os:user@host`).
    #[tracing::instrument(name = "factors.reset_by_operator", skip_all)]
    pub async fn reset_by_operator(&self, username: &str, actor: String) -> Result<u64> {
        let target = self
            .store
            .admin_named(&Username::sign_in_key(username))
            .await?
            .ok_or(Error::NotFound)?;
        let now = self.parts.clock.now();
        let audit = NewAudit::by_operator(actor, AuditAction::ResetAdminFactors, now)
            .detail(format!("admin {}", target.id));
        self.reset(&target, now, audit).await
    }

    pub(super) async fn reset(
        &self,
        target: &AdminUser,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<u64> {
        let notice = target.email.as_ref().map(|email| NewMail {
            id: Uuid::now_v7(),
            kind: MailKind::AdminFactorsReset,
            customer_id: None,
            recipient: email.clone(),
            locale: crate::customer::Locale::default(),
            created_at: now,
            link: None,
        });
        let mailed = notice.is_some();
        let ended = self
            .store
            .reset_factors(target.id, now, audit, notice)
            .await?;
        if mailed {
            self.mail.notify();
        }
        tracing::info!(event = "admin_factors_reset", admin_id = %target.id, sessions_ended = ended);
        Ok(ended)
    }
}
