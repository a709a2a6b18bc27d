//! Passkeys and security keys (WebAuthn), through kanidm's `webauthn-rs`: the ceremonies'
//! options for the browser, and the checks of what it answers (origin, challenge, signature,
//! user verification, the counter of cloned keys). The relying party is the store's public URL:
//! its host is the RP ID, so passkeys need `LATCHKEY_PUBLIC_URL` with a domain name
//! (`localhost` counts; an IP address does not, browsers refuse it). The origin must match the
//! public URL's port too, except on `localhost`, where any port is (a developer's console and
//! a test's server on a port of their own).
//!
//! A ceremony's state travels sealed in the challenge the client holds, like every other
//! step of an admin's sign-in, so any replica finishes what another began.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use crate::{Error, Result};

/// The relying party: checks origins against the store's public URL.
pub struct Passkeys {
    webauthn: Webauthn,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys").finish_non_exhaustive()
    }
}

/// A passkey being registered: what the browser's `navigator.credentials.create` needs (JSON,
/// as `PublicKeyCredential.parseCreationOptionsFromJSON` takes its `publicKey`), and the state
/// to seal.
pub struct Registration {
    pub options: String,
    pub state: PasskeyRegistration,
}

/// An admin's passkeys asked for at sign-in: the options for `navigator.credentials.get` (JSON)
/// and the state to seal in the challenge.
pub struct Request {
    pub options: String,
    pub state: PasskeyAuthentication,
}

/// A passkey as stored (sealed, like a TOTP secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPasskey(pub Passkey);

impl Passkeys {
    /// The relying party of `public_url` (named `store` in the browser's prompt); `None` when
    /// its host cannot be one (an IP address, no host).
    pub fn new(public_url: &str, store: &str) -> Option<Self> {
        let origin = Url::parse(public_url).ok()?;
        let rp_id = origin.domain()?.to_owned();
        let webauthn = WebauthnBuilder::new(&rp_id, &origin)
            .ok()?
            .rp_name(store)
            .allow_any_port(rp_id == "localhost")
            .build()
            .ok()?;
        Some(Self { webauthn })
    }

    /// Starts registering a passkey for `admin_id`, never one of `existing` again.
    pub fn register(
        &self,
        admin_id: Uuid,
        username: &str,
        existing: &[StoredPasskey],
    ) -> Result<Registration> {
        let exclude = existing.iter().map(|p| p.0.cred_id().clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(admin_id, username, username, Some(exclude))
            .map_err(|e| Error::internal(format!("passkey registration: {e}")))?;
        Ok(Registration {
            options: json(&options)?,
            state,
        })
    }

    /// The passkey the browser made, if its answer checks out against `state`.
    pub fn registered(
        &self,
        credential: &str,
        state: &PasskeyRegistration,
    ) -> Option<StoredPasskey> {
        let credential: RegisterPublicKeyCredential = serde_json::from_str(credential).ok()?;
        self.webauthn
            .finish_passkey_registration(&credential, state)
            .ok()
            .map(StoredPasskey)
    }

    /// Asks for one of `passkeys` at sign-in.
    pub fn request(&self, passkeys: &[StoredPasskey]) -> Result<Request> {
        let keys: Vec<Passkey> = passkeys.iter().map(|p| p.0.clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(|e| Error::internal(format!("passkey request: {e}")))?;
        Ok(Request {
            options: json(&options)?,
            state,
        })
    }

    /// Which of the admin's passkeys answered, updated with its new counter; `None` when the
    /// answer does not check out.
    pub fn answered(
        &self,
        credential: &str,
        state: &PasskeyAuthentication,
        passkeys: Vec<(Uuid, StoredPasskey)>,
    ) -> Option<(Uuid, StoredPasskey)> {
        let credential: PublicKeyCredential = serde_json::from_str(credential).ok()?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&credential, state)
            .ok()?;
        passkeys
            .into_iter()
            .find_map(|(id, mut key)| key.0.update_credential(&result).map(|_| (id, key)))
    }
}

fn json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("passkey options: {e}")))
}
