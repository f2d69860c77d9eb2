//! `server::auth`: a stream's or a publish's token, from its claims to its
//! grant, and the `Cookie` fields it may come in.
//!
//! The claims are the fuzzer's: `exp` and `nbf` as any JSON number or
//! string (huge, negative, fractional), `sub`, and the `sse` patterns as any
//! strings, signed with the server's HS256 secret, so that every token
//! reaches the claim checks. Property: nothing panics, and
//! - a token whose `exp` is a whole number at least an hour ahead (any size
//!   up to `u64::MAX`), with no `nbf` or one in the past, and whose patterns
//!   all parse, is accepted with exactly those patterns, its subject, and an
//!   expiry no earlier than an hour from now and no later than the year
//!   9999;
//! - one whose `exp` is a whole number more than the leeway in the past,
//!   with no `nbf` or a whole-number one, is refused as expired (an `nbf`
//!   that is not a number is refused first, as a malformed token); one
//!   whose `nbf` is a whole number more than the leeway ahead (and `exp`
//!   fine) is refused as not valid yet;
//! - every refusal is `401 unauthorized` with a message that begins "the
//!   token is not valid: ", or else names the claim that is not a pattern:
//!   "the token's sse.subscribe claim is not valid: " (`sse.publish`) and
//!   why the first of its patterns that does not parse is not one,
//!   `subscribe` checked before `publish`;
//! - whatever the `Cookie` fields, joining them gives one field holding
//!   each in order, `; ` between (an empty field, which holds no cookie,
//!   may be left out or leave its `; ` behind: with one, the joined field
//!   holds the same `;`-separated pieces, empty ones aside, in the same
//!   order); a stream with cookies alone is never refused (a failing
//!   cookie counts as none); and with a valid token in a cookie field ahead
//!   of the others, the stream gets that token's grant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use server::auth::{join_cookie_fields, Auth, JwtKey, Who};
use server::error::ApiError;
use shared::TopicPattern;
use warp::http::header::COOKIE;
use warp::http::{HeaderMap, HeaderValue};

const SECRET: &str = "fuzzing secret";
const LEEWAY: u64 = 30;

/// A number or a string where a claim's number goes.
#[derive(Debug, Arbitrary)]
enum Claim {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    /// `now + seconds`, so that the fuzzer reaches the edges near now.
    FromNow(i32),
}

/// One input: the token's claims, and `Cookie` fields.
#[derive(Debug, Arbitrary)]
pub struct Input {
    exp: Option<Claim>,
    nbf: Option<Claim>,
    sub: Option<String>,
    subscribe: Vec<String>,
    publish: Vec<String>,
    cookies: Vec<Vec<u8>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn value(claim: &Claim, now: u64) -> Value {
    match claim {
        Claim::Unsigned(n) => json!(n),
        Claim::Signed(n) => json!(n),
        Claim::Float(f) => json!(f),
        Claim::Text(s) => json!(s),
        Claim::FromNow(s) => json!(now.saturating_add_signed(i64::from(*s))),
    }
}

/// The claim as a whole number of seconds, when it is one.
fn whole(claim: &Claim, now: u64) -> Option<u64> {
    match claim {
        Claim::Unsigned(n) => Some(*n),
        Claim::Signed(n) => u64::try_from(*n).ok(),
        Claim::FromNow(s) => Some(now.saturating_add_signed(i64::from(*s))),
        Claim::Float(_) | Claim::Text(_) => None,
    }
}

fn auth() -> Auth {
    let key = JwtKey::secret(SECRET)
        .expect("a secret")
        .leeway(Duration::from_secs(LEEWAY));
    Auth::new(Some(key), Vec::new(), "sse_token".to_owned(), None, None)
}

fn unauthorized_message(error: &ApiError) -> String {
    match error {
        ApiError::Unauthorized(message) => message.clone(),
        other => panic!("a token is refused with 401 only, not {other:?}"),
    }
}

/// Decodes `data` into an [`Input`] as the libFuzzer binary does
/// ([`crate::decode`]) and checks the property on it. `false`: `data`
/// does not decode, and is skipped (libFuzzer rejects it).
pub fn run(data: &[u8]) -> bool {
    let Some(input) = crate::decode(data) else {
        return false;
    };
    check(&input);
    true
}

/// Checks the property on one decoded input.
pub fn check(input: &Input) {
    let auth = auth();
    let now = now();
    let mut claims = json!({ "sse": { "subscribe": input.subscribe, "publish": input.publish } });
    if let Some(exp) = &input.exp {
        claims["exp"] = value(exp, now);
    }
    if let Some(nbf) = &input.nbf {
        claims["nbf"] = value(nbf, now);
    }
    if let Some(sub) = &input.sub {
        claims["sub"] = json!(sub);
    }
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("a key"),
    )
    .expect("claims encode");
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is ASCII");

    // The refusal that names a claim: its first pattern that does not parse.
    let not_patterns = |what: &str, list: &[String]| {
        list.iter()
            .find_map(|p| TopicPattern::parse(p).err())
            .map(|why| format!("the token's sse.{what} claim is not valid: {why}"))
    };
    let bad_pattern = not_patterns("subscribe", &input.subscribe)
        .or_else(|| not_patterns("publish", &input.publish));
    let patterns_parse = bad_pattern.is_none();
    let exp = input.exp.as_ref().and_then(|c| whole(c, now));
    let nbf_fine = match &input.nbf {
        None => true,
        Some(c) => whole(c, now).is_some_and(|nbf| nbf <= now.saturating_sub(LEEWAY + 5)),
    };
    let ordinary = exp.is_some_and(|exp| exp >= now + 3600) && nbf_fine && patterns_parse;

    for result in [
        auth.for_stream(Some(&bearer), None, None),
        auth.for_publish(Some(&bearer)),
        auth.for_stream(None, None, Some(&token)),
    ] {
        match result {
            Ok(grant) => {
                let expires = grant.expires_at.expect("an accepted token has an expiry");
                assert!(
                    expires >= UNIX_EPOCH + Duration::from_secs(now),
                    "{input:?}"
                );
                assert!(
                    expires <= UNIX_EPOCH + Duration::from_secs(253_402_300_799),
                    "{input:?}"
                );
                if ordinary {
                    let parsed = |list: &[String]| -> Vec<TopicPattern> {
                        list.iter()
                            .map(|p| TopicPattern::parse(p).unwrap())
                            .collect()
                    };
                    assert_eq!(grant.subscribe, parsed(&input.subscribe));
                    assert_eq!(grant.publish, parsed(&input.publish));
                    if let Some(sub) = &input.sub {
                        assert_eq!(grant.who, Some(Who::Subject(sub.clone())));
                    }
                    assert!(
                        expires >= UNIX_EPOCH + Duration::from_secs(now + 3600),
                        "{input:?}"
                    );
                }
            }
            Err(error) => {
                let message = unauthorized_message(&error);
                assert!(!ordinary, "an ordinary token refused: {message}: {input:?}");
                if !message.starts_with("the token is not valid: ") {
                    assert_eq!(
                        Some(&message),
                        bad_pattern.as_ref(),
                        "a refusal names the first claim that is not a pattern, or begins \
                         \"the token is not valid: \": {input:?}"
                    );
                }
                let nbf_whole = input.nbf.as_ref().is_none_or(|c| whole(c, now).is_some());
                if exp.is_some_and(|exp| exp.saturating_add(LEEWAY + 5) < now) && nbf_whole {
                    assert_eq!(
                        message, "the token is not valid: it has expired",
                        "{input:?}"
                    );
                } else if exp.is_some_and(|exp| exp >= now + 3600)
                    && input
                        .nbf
                        .as_ref()
                        .and_then(|c| whole(c, now))
                        .is_some_and(|nbf| nbf > now + LEEWAY + 5)
                    && patterns_parse
                {
                    assert_eq!(
                        message, "the token is not valid: it is not valid yet (nbf)",
                        "{input:?}"
                    );
                }
            }
        }
    }

    // Cookie fields: joined in order, never a refusal by themselves.
    let fields: Vec<HeaderValue> = input
        .cookies
        .iter()
        .filter_map(|bytes| HeaderValue::from_bytes(bytes).ok())
        .collect();
    let mut headers = HeaderMap::new();
    for field in &fields {
        headers.append(COOKIE, field.clone());
    }
    join_cookie_fields(&mut headers);
    let joined: Vec<&HeaderValue> = headers.get_all(COOKIE).iter().collect();
    if fields.is_empty() {
        assert!(joined.is_empty());
    } else {
        assert_eq!(joined.len(), 1);
        let want = fields
            .iter()
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        if fields.iter().all(|field| !field.is_empty()) {
            assert_eq!(joined[0].as_bytes(), &want[..]);
        } else {
            let pieces = |bytes: &[u8]| -> Vec<Vec<u8>> {
                bytes
                    .split(|&b| b == b';')
                    .map(<[u8]>::trim_ascii)
                    .filter(|piece| !piece.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            assert_eq!(
                pieces(joined[0].as_bytes()),
                pieces(&want),
                "{fields:?} joined as {:?}",
                joined[0]
            );
        }
        assert!(auth.for_stream(None, Some(joined[0]), None).is_ok());
    }
    if ordinary {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_str(&format!("sse_token={token}")).expect("ASCII"),
        );
        for field in &fields {
            headers.append(COOKIE, field.clone());
        }
        join_cookie_fields(&mut headers);
        let grant = auth
            .for_stream(None, headers.get(COOKIE), None)
            .expect("a valid cookie");
        assert!(grant.who.is_some(), "the cookie's token was taken");
    }
}
