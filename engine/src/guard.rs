//! Guards: authorization providers that turn credentials into sessions and check roles.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// Index of a guard in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuardId(pub usize);

/// An authorized session. It rides on every stream opened on behalf of the request, so bindings
/// further along can evaluate their own `guarded` routes and route on identity.
pub struct Session {
    /// The guard that issued it.
    pub guard: GuardId,
    /// The identity (`sub` for jwt).
    pub identity: Option<Arc<str>>,
    /// When the credentials expire; the http server ends the stream then.
    pub expires_at: Option<SystemTime>,
    /// When to challenge the client for fresh credentials.
    pub challenge_at: Option<SystemTime>,
    /// Named values of the session (jwt: the claims its `attributes` option names), for
    /// `${guarded['<guard>'].attributes.<name>}` in routes.
    pub attributes: Vec<(Arc<str>, Arc<str>)>,
    /// Guard-specific data (claims, roles).
    pub data: Box<dyn Any + Send + Sync>,
}

impl Session {
    /// The attribute `name`, if the session has it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("guard", &self.guard)
            .field("identity", &self.identity)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A guard handler.
pub trait Guard: Send + Sync + fmt::Debug + 'static {
    /// Verifies `credentials` and returns a session, or `None` if they are not valid.
    fn reauthorize(&self, credentials: &str) -> Option<Arc<Session>>;

    /// True if `session` (issued by this guard) holds every one of `roles`.
    fn verify(&self, session: &Session, roles: &[String]) -> bool;

    /// A client holding `session` was challenged for fresh credentials (for the guard's
    /// metrics).
    fn challenged(&self, session: &Session) {
        let _ = session;
    }
}
