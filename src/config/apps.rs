//! The apps: built from the `--config` file's `apps.apps[]`, from
//! `REVERB_APP_*` variables (each from the real environment, else `.env`),
//! or from `./revurb.json`, whichever ranks highest and defines any.
//! Every per-app value goes through [`APP_OPTIONS`]: its kind, its range and
//! its default, and a bad one is an error naming its source. The webhooks
//! are one structured value (`webhooks`, or `REVERB_APP_WEBHOOKS`) or the
//! `REVERB_APP_WEBHOOK_URL` shorthand, never both; `webhooks.rs` checks them.
//!
//! This module does not read files or the environment itself; it gets the
//! [`Layers`] already read.

use serde_json::Value;

use super::options::{APP_OPTIONS, AppKey, Kind, Opt, Val};
use super::sources::{ConfigError, JsonFile, Layers, Raw, Source, is_app_key, json_path};
use super::webhooks::{self, PairField};
use crate::pusher::{App, ClientEvents, RateLimit};

/// Keys accepted in an app object that the server does not use (Laravel's
/// side reads them to reach the server).
const IGNORED_APP_KEYS: &[&str] = &["options"];

/// The credentials every app needs.
const REQUIRED: [AppKey; 3] = [AppKey::AppId, AppKey::Key, AppKey::Secret];

/// One app and where its id and key came from (for duplicate errors).
pub struct Built {
    pub app: App,
    pub id: Source,
    pub key: Source,
}

/// The apps of a JSON file, `None` when it lists none.
pub fn from_file(f: &JsonFile) -> Result<Option<Vec<Built>>, ConfigError> {
    let at = |key: String| Source::File {
        path: f.path.clone(),
        key,
    };
    let invalid = |key: &str, why: &str| ConfigError::Invalid {
        source: at(key.to_string()),
        why: why.to_string(),
    };
    if let Some(p) = json_path(&f.root, "apps.provider")
        && p != "config"
    {
        return Err(invalid("apps.provider", "only \"config\" is supported"));
    }
    if let Some(d) = f.root.get("default")
        && d != "reverb"
    {
        return Err(invalid("default", "only \"reverb\" is supported"));
    }
    let Some(list) = json_path(&f.root, "apps.apps") else {
        return Ok(None);
    };
    let Value::Array(list) = list else {
        return Err(invalid("apps.apps", "must be a list of app objects"));
    };
    let mut apps = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(invalid(&format!("apps.apps[{i}]"), "must be an object"));
        };
        for k in obj.keys() {
            if !is_app_key(k) && !IGNORED_APP_KEYS.contains(&k.as_str()) {
                return Err(invalid(&format!("apps.apps[{i}].{k}"), "unknown key"));
            }
        }
        if let Some(Value::Object(rl)) = obj.get("rate_limiting") {
            for k in rl.keys() {
                let key = format!("rate_limiting.{k}");
                if !APP_OPTIONS.iter().any(|o| o.json == key) {
                    return Err(invalid(&format!("apps.apps[{i}].{key}"), "unknown key"));
                }
            }
        }
        let get = |opt: &'static Opt<AppKey>| {
            let raw = json_path(item, opt.json)
                .filter(|v| !v.is_null())
                .filter(|_| opt.in_file());
            (
                raw.map(|v| Raw::Json(v.clone())),
                at(format!("apps.apps[{i}].{}", opt.json)),
            )
        };
        apps.push(build(&get)?);
    }
    Ok(Some(apps))
}

/// The one app of the `REVERB_APP_*` variables, each taken from the real
/// environment, else `.env`; `None` when none of its credentials is set.
pub fn from_env(layers: &Layers<'_>) -> Result<Option<Built>, ConfigError> {
    let found: Vec<(AppKey, Option<Source>)> = REQUIRED
        .iter()
        .map(|k| (*k, layers.env_var(k.opt().env).map(|(_, s)| s)))
        .collect();
    if found.iter().all(|(_, s)| s.is_none()) {
        return Ok(None);
    }
    if found.iter().any(|(_, s)| s.is_none()) {
        return Err(ConfigError::IncompleteApp {
            set: found.iter().filter_map(|(_, s)| s.clone()).collect(),
            missing: found
                .iter()
                .filter(|(_, s)| s.is_none())
                .map(|(k, _)| k.opt().env)
                .collect(),
        });
    }
    let get = |opt: &'static Opt<AppKey>| match layers.env_var(opt.env) {
        Some((v, source)) => (Some(Raw::Text(v)), source),
        None => (None, Source::Env(opt.env)),
    };
    build(&get).map(Some)
}

/// Check one raw value against its option.
fn parse(opt: &Opt<AppKey>, raw: &Raw) -> Result<Val, String> {
    match raw {
        Raw::Text(s) => opt.kind.parse_text(s),
        // Laravel's config may hold numeric ids and keys.
        Raw::Json(Value::Number(n)) if opt.kind == Kind::Str => Ok(Val::Str(n.to_string())),
        Raw::Json(v) => opt.kind.parse_json(v),
    }
}

/// Build one app from a lookup by option, which gives the raw value (if
/// set) and where it is or would be; unset values take the table's default.
fn build(
    get: &dyn Fn(&'static Opt<AppKey>) -> (Option<Raw>, Source),
) -> Result<Built, ConfigError> {
    // The value if it is set (checked against its kind), and where it is.
    let given = |k: AppKey| -> Result<(Option<Val>, Source), ConfigError> {
        let opt = k.opt();
        match get(opt) {
            (Some(raw), source) => match parse(opt, &raw) {
                Ok(v) => Ok((Some(v), source)),
                Err(why) => Err(ConfigError::Invalid { source, why }),
            },
            (None, source) => Ok((None, source)),
        }
    };
    let value = |k: AppKey| -> Result<(Option<Val>, Source), ConfigError> {
        let opt = k.opt();
        match given(k)? {
            (None, source) => Ok((
                opt.default.and_then(|d| opt.kind.parse_text(d).ok()),
                source,
            )),
            set => Ok(set),
        }
    };
    let int = |k: AppKey| value(k).map(|(v, _)| v.and_then(|v| as_int(&v)));
    let int_or_default = |k: AppKey| int(k).map(|v| v.unwrap_or_default());
    let flag = |k: AppKey| value(k).map(|(v, _)| matches!(v, Some(Val::Bool(true))));
    let required = |k: AppKey| -> Result<(String, Source), ConfigError> {
        match value(k)? {
            (Some(Val::Str(s)), source) if !s.is_empty() => Ok((s, source)),
            (_, source) => Err(ConfigError::Invalid {
                source,
                why: "is required".into(),
            }),
        }
    };
    let (id, id_source) = required(AppKey::AppId)?;
    let (key, key_source) = required(AppKey::Key)?;
    let (secret, _) = required(AppKey::Secret)?;
    let mut app = App::new(&id, &key, &secret);
    app.ping_interval = int_or_default(AppKey::PingInterval)?;
    app.activity_timeout = int_or_default(AppKey::ActivityTimeout)?;
    app.max_connections = int(AppKey::MaxConnections)?;
    app.max_message_size = int_or_default(AppKey::MaxMessageSize)? as usize;
    if let (Some(Val::List(origins)), source) = value(AppKey::AllowedOrigins)? {
        if origins.is_empty() {
            return Err(ConfigError::Invalid {
                source,
                why: "give at least one origin host, or *".into(),
            });
        }
        app.allowed_origins = origins;
    }
    if let (Some(Val::Str(who)), _) = value(AppKey::AcceptClientEventsFrom)? {
        app.accept_client_events_from = ClientEvents::parse(&who).unwrap_or(ClientEvents::Members);
    }
    // The other rate_limiting keys are read only when it is on.
    if flag(AppKey::RateLimitingEnabled)? {
        app.rate_limit = Some(RateLimit {
            max_attempts: int_or_default(AppKey::RateLimitMaxAttempts)? as u32,
            decay_seconds: int_or_default(AppKey::RateLimitDecaySeconds)?,
            terminate_on_limit: flag(AppKey::RateLimitTerminate)?,
        });
    }
    app.max_presence_members = int_or_default(AppKey::MaxPresenceMembers)? as usize;
    app.max_user_info_size = int_or_default(AppKey::MaxUserInfoSize)? as usize;
    app.webhook_delay_ms = int_or_default(AppKey::WebhookDelay)? * 1000;
    app.webhooks = webhooks(&given)?;
    app.enable_user_authentication = flag(AppKey::EnableUserAuthentication)?;
    app.user_authentication_timeout = int_or_default(AppKey::UserAuthenticationTimeout)?;
    app.enable_subscription_count = flag(AppKey::EnableSubscriptionCount)?;
    Ok(Built {
        app,
        id: id_source,
        key: key_source,
    })
}

/// The app's webhooks: the `webhooks` list (the file's key, or its JSON in
/// `REVERB_APP_WEBHOOKS`), or the one webhook of `REVERB_APP_WEBHOOK_URL`
/// and `REVERB_APP_WEBHOOK_EVENTS`; both forms at once is an error naming
/// both (a file never sets the pair).
fn webhooks(
    given: &dyn Fn(AppKey) -> Result<(Option<Val>, Source), ConfigError>,
) -> Result<Vec<crate::webhook::Webhook>, ConfigError> {
    let (list, list_source) = given(AppKey::Webhooks)?;
    let (url, url_source) = given(AppKey::WebhookUrl)?;
    let (events, events_source) = given(AppKey::WebhookEvents)?;
    let both = |other: &Source| ConfigError::Invalid {
        source: list_source.clone(),
        why: format!("is set and so is {other}; give the webhooks in one form, not both"),
    };
    match (list, url, events) {
        (Some(_), Some(_), _) => Err(both(&url_source)),
        (Some(_), None, Some(_)) => Err(both(&events_source)),
        (Some(Val::Json(v)), None, None) => {
            webhooks::parse_list(&v).map_err(|bad| bad.at(list_source))
        }
        (Some(_), None, None) => Ok(Vec::new()),
        (None, None, Some(_)) => Err(ConfigError::Invalid {
            source: events_source,
            why: format!(
                "is set but {} is not; it gives the event types of that webhook",
                AppKey::WebhookUrl.opt().env
            ),
        }),
        (None, None, None) => Ok(Vec::new()),
        (None, Some(url), events) => {
            let url = match url {
                Val::Str(s) => s,
                other => other.display(),
            };
            let events = match events {
                Some(Val::List(l)) => l,
                _ => webhooks::DEFAULT_EVENTS
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            };
            match webhooks::from_pair(&url, &events) {
                Ok(w) => Ok(vec![w]),
                Err((PairField::Url, why)) => Err(ConfigError::Invalid {
                    source: url_source,
                    why,
                }),
                Err((PairField::Events, why)) => Err(ConfigError::Invalid {
                    source: events_source,
                    why,
                }),
            }
        }
    }
}

fn as_int(v: &Val) -> Option<u64> {
    match v {
        Val::Int(n) => Some(*n),
        _ => None,
    }
}

/// No two apps may share an `app_id` or a `key`.
pub fn check_unique(apps: &[Built]) -> Result<(), ConfigError> {
    for (i, a) in apps.iter().enumerate() {
        for b in &apps[..i] {
            let clash = if a.app.id == b.app.id {
                Some(("app_id", &a.app.id, &b.id, &a.id))
            } else if a.app.key == b.app.key {
                Some(("key", &a.app.key, &b.key, &a.key))
            } else {
                None
            };
            if let Some((field, value, first, second)) = clash {
                return Err(ConfigError::Duplicate {
                    field,
                    value: value.clone(),
                    first: Box::new(first.clone()),
                    second: Box::new(second.clone()),
                });
            }
        }
    }
    Ok(())
}
