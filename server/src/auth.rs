//! Tokens to topic rights: who may read which topics, and publish to which.
//!
//! With `--jwt-secret` (HS256) or `--jwt-public-key` (RS256 or ES256, from
//! the PEM key's type) a JWT carries its rights in the claim
//! `"sse": {"subscribe": [...], "publish": [...]}`, each entry a topic
//! pattern (`name`, `prefix.*`, `*`). Only the configured algorithm is
//! accepted (`alg: none` cannot even be expressed); `exp` is required and
//! checked with a 30 s leeway, `nbf` honoured, `aud` and `iss` checked when
//! configured. Topics matching `--private` need a token that covers them to
//! be read; the others are public. `--publish-token` stays a single secret
//! that may publish to every topic; `--metrics-token` guards `/metrics` and
//! `/healthz`. Secrets are compared in constant time and never logged or
//! echoed.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use shared::TopicPattern;
use subtle::ConstantTimeEq;
use warp::http::header::COOKIE;
use warp::http::{HeaderMap, HeaderValue};

use crate::error::ApiError;
use crate::hub::Hidden;

/// How tokens are checked.
#[derive(Clone)]
pub struct JwtKey {
    /// The key signatures are checked against.
    key: DecodingKey,
    /// The one algorithm accepted, with the claims checked.
    validation: Validation,
    /// Leeway on `exp` and `nbf`, for clocks that disagree a little.
    leeway: Duration,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("algorithm", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a JWT key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The public key file cannot be read.
    #[error("--jwt-public-key {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Neither an RSA nor an EC public key in PEM.
    #[error("--jwt-public-key {0}: not an RSA or EC (P-256) public key in PEM")]
    NotAKey(String),
    /// An empty secret.
    #[error("--jwt-secret must not be empty")]
    EmptySecret,
}

impl JwtKey {
    /// HS256 with `secret`.
    ///
    /// # Errors
    /// [`KeyError::EmptySecret`].
    pub fn secret(secret: &str) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| KeyError::EmptySecret)?;
        Ok(Self::with(key, Algorithm::HS256))
    }

    /// RS256 or ES256, from the PEM public key in `path`.
    ///
    /// # Errors
    /// [`KeyError`] naming the file.
    pub fn public_key(path: &std::path::Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| KeyError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Self::with(key, Algorithm::RS256));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            return Ok(Self::with(key, Algorithm::ES256));
        }
        Err(KeyError::NotAKey(shown))
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Self {
            key,
            validation,
            leeway: Duration::from_secs(30),
        }
    }

    /// Sets the leeway on `exp` and `nbf` (30 s unless set).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self.leeway = Duration::from_secs(leeway.as_secs());
        self
    }

    /// Also requires `aud` to be `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self
    }

    /// Also requires `iss` to be `issuer`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// The algorithm accepted.
    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
    }
}

/// The claims this server reads.
#[derive(Debug, Deserialize)]
struct Claims {
    /// The subject: the rate limiter's key.
    #[serde(default)]
    sub: Option<String>,
    /// Expiry, seconds since the Unix epoch (required: the validation
    /// refuses a token without it, naming the claim).
    #[serde(default)]
    exp: Option<u64>,
    /// The rights.
    #[serde(default)]
    sse: SseClaims,
}

/// `"sse": {"subscribe": [...], "publish": [...]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SseClaims {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

/// What a request may do.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Patterns it may read (besides the public topics).
    pub subscribe: Vec<TopicPattern>,
    /// Patterns it may publish to.
    pub publish: Vec<TopicPattern>,
    /// Who it is, for the rate limiter: the token's subject, a hash of the
    /// token, or the publish token; `None` without a token.
    pub who: Option<Who>,
    /// When the token stops being accepted (`exp` plus the leeway).
    pub expires_at: Option<SystemTime>,
}

/// Who a token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    /// A JWT's `sub`.
    Subject(String),
    /// A JWT without `sub`: a hash of the token.
    Token(u64),
    /// The `--publish-token` secret.
    PublishToken,
}

/// The server's access rules.
#[derive(Debug, Clone)]
pub struct Auth {
    /// JWT checking, when configured.
    pub jwt: Option<JwtKey>,
    /// Patterns of the topics that need a token to be read.
    pub private: Vec<TopicPattern>,
    /// The cookie a stream's token may come in.
    pub cookie: String,
    /// The one secret that may publish everywhere.
    pub publish_token: Option<String>,
    /// The secret `/metrics` and `/healthz` need.
    pub metrics_token: Option<String>,
    /// Hashes tokens without `sub` into rate-limiter keys.
    hasher: std::collections::hash_map::RandomState,
}

/// What a stream may read, decided before it subscribes.
#[derive(Debug, Clone, Default)]
pub struct StreamAccess {
    /// Topics hidden from a stream of every topic.
    pub hidden: Option<Arc<Hidden>>,
    /// When the stream's token expires: the stream ends then, with an
    /// `auth_expired` event.
    pub expires_at: Option<SystemTime>,
}

/// The `access_token` query parameter, if any.
pub fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "access_token")
        .map(|(_, value)| value.into_owned())
}

/// Compares two secrets without stopping at the first difference.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The token of `Authorization: Bearer <token>`; the scheme is
/// case-insensitive (RFC 9110, section 11.1). `Err` for a header that is
/// there but not a bearer token.
fn bearer(authorization: &HeaderValue) -> Result<&str, ()> {
    let (scheme, token) = authorization
        .to_str()
        .map_err(drop)?
        .split_once(' ')
        .ok_or(())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(());
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(());
    }
    Ok(token)
}

/// Joins several `Cookie` fields into one, `; ` between them, as nginx
/// does: HTTP/2 clients may split cookies into a field each (RFC 9113,
/// section 8.2.3), and HTTP/1.1 proxies may send two lines. Every route then
/// reads one field that holds every cookie.
pub fn join_cookie_fields(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for field in headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(field.as_bytes());
    }
    // Each field was a valid value, and `; ` is too.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// The value of cookie `name` in a `Cookie` header.
///
/// Bytes that are not UTF-8 (a browser may send another site's cookie in
/// Latin-1) spoil only the cookie they are in, not the whole field.
fn cookie(header: &HeaderValue, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header.as_bytes());
    cookie::Cookie::split_parse(text.as_ref())
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw().map(str::to_owned))
}

impl Auth {
    /// Access rules from the options.
    pub fn new(
        jwt: Option<JwtKey>,
        private: Vec<TopicPattern>,
        cookie: String,
        publish_token: Option<String>,
        metrics_token: Option<String>,
    ) -> Self {
        Self {
            jwt,
            private,
            cookie,
            publish_token,
            metrics_token,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Open to all: no tokens, no private topics.
    pub fn open() -> Self {
        Self::new(None, Vec::new(), "sse_token".to_owned(), None, None)
    }

    /// The grant of a JWT.
    fn decode(&self, token: &str) -> Result<Grant, String> {
        let Some(jwt) = &self.jwt else {
            return Err("this server takes no tokens".to_owned());
        };
        if header_alg(token).is_some_and(|alg| alg != format!("{:?}", jwt.algorithm())) {
            // `none`, or another algorithm: refused before anything else.
            return Err(describe(&ErrorKind::InvalidAlgorithm, jwt.algorithm()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &jwt.key, &jwt.validation)
            .map_err(|e| describe(e.kind(), jwt.algorithm()))?;
        let claims = data.claims;
        let patterns = |list: &[String], what: &str| {
            list.iter()
                .map(|p| {
                    TopicPattern::parse(p)
                        .map_err(|e| format!("the token's sse.{what} claim is not valid: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let who = match claims.sub {
            Some(sub) => Who::Subject(sub),
            // The signed part only: an ECDSA signature has a twin, (r, s) and
            // (r, n - s) both valid, and signers (OpenSSL among them) give
            // either, so both are accepted; keyed on what was signed, the
            // twins are one token to the rate limiter.
            None => Who::Token(self.hasher.hash_one(signed_part(token))),
        };
        Ok(Grant {
            subscribe: patterns(&claims.sse.subscribe, "subscribe")?,
            publish: patterns(&claims.sse.publish, "publish")?,
            who: Some(who),
            // The token is accepted until then, so a stream lasts as long.
            expires_at: claims.exp.map(|exp| expiry(exp, jwt.leeway)),
        })
    }

    /// The grant of a stream request: its token from `Authorization:
    /// Bearer`, else the cookie, else `?access_token=`.
    ///
    /// # Errors
    /// `401 unauthorized` for a token that fails validation, sent by header
    /// or query. A cookie that fails counts as no token.
    pub fn for_stream(
        &self,
        authorization: Option<&HeaderValue>,
        cookie_header: Option<&HeaderValue>,
        query_token: Option<&str>,
    ) -> Result<Grant, ApiError> {
        if let Some(header) = authorization {
            let token = bearer(header).map_err(|()| {
                ApiError::Unauthorized(
                    "the Authorization header is not `Bearer <token>`".to_owned(),
                )
            })?;
            return self.decode(token).map_err(ApiError::Unauthorized);
        }
        // A cookie that fails (expired, signed with an old key) counts as
        // no token: the query's is tried next, so that a stale cookie on
        // the origin never hides the token a page put in the URL.
        if let Some(grant) = cookie_header
            .and_then(|h| cookie(h, &self.cookie))
            .and_then(|token| self.decode(&token).ok())
        {
            return Ok(grant);
        }
        match query_token {
            Some(token) => self.decode(token).map_err(ApiError::Unauthorized),
            None => Ok(Grant::default()),
        }
    }

    /// Whether `topic` needs a token to be read.
    pub fn is_private(&self, topic: &str) -> bool {
        self.private.iter().any(|p| p.matches(topic))
    }

    /// Whether `grant` may read `topic`.
    pub fn may_read(&self, grant: &Grant, topic: &str) -> bool {
        !self.is_private(topic) || grant.subscribe.iter().any(|p| p.matches(topic))
    }

    /// Whether `pattern` reaches a private topic.
    fn reaches_private(&self, pattern: &TopicPattern) -> bool {
        self.private.iter().any(|private| overlap(private, pattern))
    }

    /// What a stream of `patterns` may read with `grant`: every named topic
    /// must be readable, a prefix pattern that reaches private topics must
    /// be covered whole by the grant; a stream of every topic reads the
    /// public ones and those the grant covers (the rest is hidden).
    ///
    /// # Errors
    /// `401 unauthorized` when a token is needed and none was sent; `403
    /// forbidden` when the token does not cover a topic, naming it.
    pub fn check_stream(
        &self,
        grant: &Grant,
        patterns: &BTreeSet<TopicPattern>,
    ) -> Result<Option<Arc<Hidden>>, ApiError> {
        let every = patterns.is_empty() || patterns.contains(&TopicPattern::All);
        for pattern in patterns {
            if *pattern == TopicPattern::All || !self.reaches_private(pattern) {
                continue;
            }
            if grant.subscribe.iter().any(|mine| mine.covers(pattern)) {
                continue;
            }
            return Err(self.refusal(grant, &format!("reading {pattern}")));
        }
        if every && !self.private.is_empty() {
            return Ok(Some(Arc::new(Hidden {
                private: self.private.clone(),
                allowed: grant.subscribe.clone(),
            })));
        }
        Ok(None)
    }

    /// `401` without a token, `403` with one that does not cover `what`.
    fn refusal(&self, grant: &Grant, what: &str) -> ApiError {
        if grant.who.is_none() {
            ApiError::Unauthorized(format!("{what} needs a token"))
        } else {
            ApiError::Forbidden(format!("the token does not allow {what}"))
        }
    }

    /// The grant of a publish, from `Authorization: Bearer` only (a cookie
    /// never authorizes a publish). Without JWT and publish token, everyone
    /// may publish everywhere.
    ///
    /// # Errors
    /// `401 unauthorized` for a missing, malformed or invalid token when one
    /// is needed.
    pub fn for_publish(&self, authorization: Option<&HeaderValue>) -> Result<Grant, ApiError> {
        if self.jwt.is_none() && self.publish_token.is_none() {
            return Ok(Grant {
                publish: vec![TopicPattern::All],
                ..Grant::default()
            });
        }
        let needed = || {
            ApiError::Unauthorized(match (&self.jwt, &self.publish_token) {
                (None, _) => "publishing needs the header Authorization: Bearer <token> with \
                              the server's publish token"
                    .to_owned(),
                _ => "publishing needs the header Authorization: Bearer <token> with a token \
                      whose sse.publish claim covers the topic"
                    .to_owned(),
            })
        };
        let token = authorization
            .map(bearer)
            .transpose()
            .map_err(|()| needed())?
            .ok_or_else(needed)?;
        if let Some(secret) = &self.publish_token {
            if same_secret(token.as_bytes(), secret.as_bytes()) {
                return Ok(Grant {
                    publish: vec![TopicPattern::All],
                    who: Some(Who::PublishToken),
                    ..Grant::default()
                });
            }
            if self.jwt.is_none() {
                return Err(needed());
            }
        }
        self.decode(token).map_err(ApiError::Unauthorized)
    }

    /// Whether `grant` may publish to `topic`.
    ///
    /// # Errors
    /// `403 forbidden`, naming the topic.
    pub fn check_publish(&self, grant: &Grant, topic: &str) -> Result<(), ApiError> {
        if grant.publish.iter().any(|p| p.matches(topic)) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "the token does not allow publishing to {topic}"
        )))
    }

    /// Checks the metrics token, when one is configured.
    ///
    /// # Errors
    /// `401 unauthorized`.
    pub fn check_metrics(&self, authorization: Option<&HeaderValue>) -> Result<(), ApiError> {
        let Some(secret) = &self.metrics_token else {
            return Ok(());
        };
        let given = authorization.and_then(|h| bearer(h).ok());
        if given.is_some_and(|g| same_secret(g.as_bytes(), secret.as_bytes())) {
            return Ok(());
        }
        Err(ApiError::Unauthorized(
            "this endpoint needs the header Authorization: Bearer <token> with the server's \
             metrics token"
                .to_owned(),
        ))
    }
}

/// The latest expiry a token is given: the last second of the year 9999. A
/// larger `exp` (`u64::MAX` is a common "never") means the same, and no
/// client's number ever overflows the clock's arithmetic.
const LATEST_EXPIRY: Duration = Duration::from_secs(253_402_300_799);

/// When a token with `exp` stops being accepted: `exp` plus the leeway,
/// capped at [`LATEST_EXPIRY`].
fn expiry(exp: u64, leeway: Duration) -> SystemTime {
    let at = Duration::from_secs(exp)
        .saturating_add(leeway)
        .min(LATEST_EXPIRY);
    UNIX_EPOCH + at
}

/// A JWT's `header.payload`: what its signature signs.
fn signed_part(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(signed, _)| signed)
}

/// The `alg` a token's header names, read without trusting anything else.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&json).ok()?;
    Some(header.get("alg")?.as_str()?.to_owned())
}

/// Whether some topic matches both patterns.
fn overlap(a: &TopicPattern, b: &TopicPattern) -> bool {
    match (a, b) {
        (TopicPattern::All, _) | (_, TopicPattern::All) => true,
        (TopicPattern::Exact(x), other) | (other, TopicPattern::Exact(x)) => other.matches(x),
        (TopicPattern::Prefix(x), TopicPattern::Prefix(y)) => {
            x.starts_with(y.as_str()) || y.starts_with(x.as_str())
        }
    }
}

/// What is wrong with a token, for its 401 (never the token itself).
fn describe(kind: &ErrorKind, algorithm: Algorithm) -> String {
    let why = match kind {
        ErrorKind::ExpiredSignature => "it has expired".to_owned(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidSignature => "its signature does not match".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            format!("it is not signed with {algorithm:?}, the one algorithm accepted")
        }
        ErrorKind::InvalidAudience => "its audience (aud) is not accepted".to_owned(),
        ErrorKind::InvalidIssuer => "its issuer (iss) is not accepted".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no {claim} claim"),
        ErrorKind::Json(e) => format!("its claims are not valid: {e}"),
        _ => "it is not a well-formed JWT".to_owned(),
    };
    format!("the token is not valid: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TopicPattern {
        TopicPattern::parse(s).unwrap()
    }

    #[test]
    fn patterns_overlap_when_some_topic_matches_both() {
        assert!(overlap(&p("user.*"), &p("user.42")));
        assert!(overlap(&p("user.*"), &p("user.eu.*")));
        assert!(overlap(&p("user.eu.*"), &p("user.*")));
        assert!(!overlap(&p("user.*"), &p("users.1")));
        assert!(!overlap(&p("a"), &p("b")));
        assert!(overlap(&p("*"), &p("b")));
    }

    #[test]
    fn tokens_come_from_the_header_the_cookie_or_the_query() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(&h("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(&h("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(&h("Basic abc")), Err(()));
        assert_eq!(bearer(&h("Bearer ")), Err(()));
        assert_eq!(
            cookie(&h("a=1; sse_token=x.y.z; b=2"), "sse_token").as_deref(),
            Some("x.y.z")
        );
        let latin1 = HeaderValue::from_bytes(b"name=Jos\xe9; sse_token=x.y.z").unwrap();
        assert_eq!(cookie(&latin1, "sse_token").as_deref(), Some("x.y.z"));
        assert_eq!(cookie(&h("a=1"), "sse_token"), None);
    }

    #[test]
    fn cookie_fields_are_joined_into_one() {
        let joined = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(COOKIE, HeaderValue::from_static(value));
            }
            join_cookie_fields(&mut headers);
            let all: Vec<_> = headers.get_all(COOKIE).iter().cloned().collect();
            all
        };
        assert!(joined(&[]).is_empty());
        assert_eq!(joined(&["a=1"]), ["a=1"]);
        assert_eq!(joined(&["a=1", "b=2"]), ["a=1; b=2"]);
        assert_eq!(joined(&["a=1", "b=2; c=3", "d=4"]), ["a=1; b=2; c=3; d=4"]);
    }

    #[test]
    fn far_expiries_are_capped_not_overflowed() {
        let leeway = Duration::from_secs(30);
        assert_eq!(expiry(u64::MAX, leeway), UNIX_EPOCH + LATEST_EXPIRY);
        assert_eq!(expiry(1 << 63, leeway), UNIX_EPOCH + LATEST_EXPIRY);
        assert_eq!(expiry(100, leeway), UNIX_EPOCH + Duration::from_secs(130));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
    }
}
