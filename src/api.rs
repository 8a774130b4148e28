//! The Pusher HTTP API (`/apps/{id}/...`), sans-IO: a parsed request, the
//! hub and the time in, a response out. Shapes, codes and texts follow
//! Reverb (reference section 4) except where the port decisions differ:
//! `auth_key` and the 600 s timestamp window are checked, a body that is not
//! JSON is a 400 with a JSON message, `{"channels":{}}` when empty.
//!
//! `POST /users/{id}/terminate_connections` is also accepted without the
//! `/apps/{id}` prefix (what the Python SDK sends): the app is the one whose
//! key the signed `auth_key` names.

use serde_json::{Map, Value, json};

use crate::auth;
use crate::http::{Request, Response};
use crate::pusher::{AppId, Hub, channel};

/// Pusher's limit on channels per triggered event.
pub const MAX_CHANNELS_PER_EVENT: usize = 100;

/// Which endpoint a path names (for routing, logging and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Events,
    BatchEvents,
    Channels,
    Channel,
    ChannelUsers,
    Connections,
    TerminateUser,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Events => "events",
            Endpoint::BatchEvents => "batch_events",
            Endpoint::Channels => "channels",
            Endpoint::Channel => "channel",
            Endpoint::ChannelUsers => "channel_users",
            Endpoint::Connections => "connections",
            Endpoint::TerminateUser => "terminate_connections",
        }
    }
    fn method(self) -> &'static str {
        match self {
            Endpoint::Events | Endpoint::BatchEvents | Endpoint::TerminateUser => "POST",
            _ => "GET",
        }
    }
}

/// A matched route: the endpoint, the app id and the channel or user segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    /// `None` for a path without `/apps/{id}`: the app is the one the signed `auth_key` names.
    pub app_id: Option<String>,
    pub param: String,
}

/// Match `/apps/{id}/...`, or `/users/{id}/terminate_connections` without an app id (path
/// already without the server's prefix).
pub fn route(path: &str) -> Option<Route> {
    if let Some(["users", user, "terminate_connections"]) = path
        .strip_prefix('/')
        .map(|p| p.split('/').collect::<Vec<_>>())
        .as_deref()
        && !user.is_empty()
    {
        return Some(Route {
            endpoint: Endpoint::TerminateUser,
            app_id: None,
            param: raw_decode(user),
        });
    }
    let rest = path.strip_prefix("/apps/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let r = |endpoint, app: &str, param: &str| {
        Some(Route {
            endpoint,
            app_id: Some(raw_decode(app)),
            param: raw_decode(param),
        })
    };
    match parts.as_slice() {
        [app, "events"] if !app.is_empty() => r(Endpoint::Events, app, ""),
        [app, "batch_events"] if !app.is_empty() => r(Endpoint::BatchEvents, app, ""),
        [app, "channels"] if !app.is_empty() => r(Endpoint::Channels, app, ""),
        [app, "channels", ch] if !app.is_empty() && !ch.is_empty() => r(Endpoint::Channel, app, ch),
        [app, "channels", ch, "users"] if !app.is_empty() && !ch.is_empty() => {
            r(Endpoint::ChannelUsers, app, ch)
        }
        [app, "connections"] if !app.is_empty() => r(Endpoint::Connections, app, ""),
        [app, "users", user, "terminate_connections"] if !app.is_empty() && !user.is_empty() => {
            r(Endpoint::TerminateUser, app, user)
        }
        _ => None,
    }
}

/// PHP `rawurldecode`: `%XX` only, `+` stays `+`.
fn raw_decode(s: &str) -> String {
    auth::url_decode(&s.replace('+', "%2B"))
}

/// Handle an API request. `path` is without the server's prefix; `now_ms` is
/// the hub's clock and `now_unix` the wall clock for `auth_timestamp`.
pub fn handle(
    req: &Request,
    path: &str,
    hub: &mut Hub,
    now_ms: u64,
    now_unix: i64,
) -> (Option<Endpoint>, Response) {
    let Some(route) = route(path) else {
        return (None, Response::text(404, "Not found."));
    };
    let endpoint = route.endpoint;
    if req.method != endpoint.method() {
        return (
            Some(endpoint),
            Response::text(405, "Method not allowed.").header("Allow", endpoint.method()),
        );
    }
    let app = match find_app(req, &route, hub) {
        Ok(app) => app,
        Err(response) => return (Some(endpoint), response),
    };
    let cfg = hub.app(app);
    if let Err(e) = auth::verify_api_request(
        &req.method,
        path,
        &req.query,
        &req.body,
        &cfg.key,
        &cfg.secret,
        now_unix,
    ) {
        return (Some(endpoint), Response::text(401, &e.message()));
    }
    let response = dispatch(req, &route, hub, app, now_ms);
    (Some(endpoint), response)
}

/// The app a request is for: the one its path names, or for a path without `/apps/{id}` the
/// one whose key the `auth_key` parameter names (that parameter is signed and verified next).
fn find_app(req: &Request, route: &Route, hub: &Hub) -> Result<AppId, Response> {
    match &route.app_id {
        Some(id) => hub
            .app_by_id(id)
            .ok_or_else(|| Response::text(404, &format!("No matching application for ID [{id}]."))),
        None => {
            let query = auth::parse_query(&req.query);
            match query.iter().find(|(k, _)| k == "auth_key") {
                None => Err(Response::text(
                    401,
                    &auth::ApiAuthError::BadSignature.message(),
                )),
                Some((_, key)) => hub.app_by_key(key).ok_or_else(|| {
                    Response::text(401, &auth::ApiAuthError::UnknownAuthKey.message())
                }),
            }
        }
    }
}

/// Carries out a verified request.
fn dispatch(req: &Request, route: &Route, hub: &mut Hub, app: AppId, now_ms: u64) -> Response {
    let query = auth::parse_query(&req.query);
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let info: Vec<&str> = param("info")
        .map(|i| i.split(',').map(str::trim).collect())
        .unwrap_or_default();
    match route.endpoint {
        Endpoint::Events => with_json_body(req, |body| events(hub, app, now_ms, body)),
        Endpoint::BatchEvents => with_json_body(req, |body| batch_events(hub, app, now_ms, body)),
        Endpoint::Channels => {
            let channels =
                hub.channels(now_ms, app, param("filter_by_prefix").unwrap_or(""), &info);
            ok(json!({ "channels": channels }))
        }
        Endpoint::Channel => {
            let mut info = info;
            info.push("occupied");
            ok(Value::Object(hub.channel_info(
                now_ms,
                app,
                &route.param,
                &info,
            )))
        }
        Endpoint::ChannelUsers => match hub.channel_users(app, &route.param) {
            Ok(users) => ok(json!({ "users": users })),
            Err(status) => Response::json(status, "{}"),
        },
        Endpoint::Connections => ok(json!({ "connections": hub.cluster_connection_count(app) })),
        Endpoint::TerminateUser => {
            hub.terminate_user(now_ms, app, &route.param);
            ok(json!({}))
        }
    }
}

fn ok(v: Value) -> Response {
    Response::json(200, v.to_string())
}

fn bad_request(msg: &str) -> Response {
    Response::json(400, json!({ "error": msg }).to_string())
}

/// Laravel-style validation errors: 422 `{"field":["message"]}`.
fn invalid(errors: Vec<(String, String)>) -> Response {
    let mut map = Map::new();
    for (field, msg) in errors {
        if let Value::Array(list) = map.entry(field).or_insert_with(|| Value::Array(Vec::new())) {
            list.push(Value::String(msg));
        }
    }
    Response::json(422, Value::Object(map).to_string())
}

fn with_json_body(req: &Request, f: impl FnOnce(&Map<String, Value>) -> Response) -> Response {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(body)) => f(&body),
        Ok(_) => bad_request("The request body must be a JSON object."),
        Err(e) if req.body.is_empty() => bad_request(&format!(
            "The request body is empty; send a JSON object ({e})."
        )),
        Err(e) => bad_request(&format!("The request body is not valid JSON: {e}.")),
    }
}

/// One validated event of `events` or `batch_events`.
struct Event<'a> {
    name: &'a str,
    data: &'a str,
    channels: Vec<String>,
    socket_id: Option<&'a str>,
    info: Option<&'a str>,
}

fn parse_event<'a>(
    body: &'a Map<String, Value>,
    prefix: &str,
    multi: bool,
) -> Result<Event<'a>, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let field = |f: &str| format!("{prefix}{f}");
    let string = |key: &str, errors: &mut Vec<(String, String)>, required: bool| match body.get(key)
    {
        Some(Value::String(s)) => Some(s.as_str()),
        None | Some(Value::Null) if !required => None,
        None | Some(Value::Null) => {
            errors.push((field(key), format!("The {key} field is required.")));
            None
        }
        Some(_) => {
            errors.push((field(key), format!("The {key} field must be a string.")));
            None
        }
    };
    let name = string("name", &mut errors, true);
    let data = string("data", &mut errors, true);
    let socket_id = string("socket_id", &mut errors, false);
    let info = string("info", &mut errors, false);
    let channels = parse_channels(body, prefix, multi, &mut errors);
    if let Some(name) = name
        && name.len() > 200
    {
        errors.push((
            field("name"),
            "The name field must not be greater than 200 characters.".into(),
        ));
    }
    match (name, data, errors.is_empty()) {
        (Some(name), Some(data), true) => Ok(Event {
            name,
            data,
            channels,
            socket_id,
            info,
        }),
        _ => Err(errors),
    }
}

/// The `channels` (when `multi`) or `channel` field of an event; what is wrong goes to `errors`
/// under `prefix` + the field name, in Laravel's words.
fn parse_channels(
    body: &Map<String, Value>,
    prefix: &str,
    multi: bool,
    errors: &mut Vec<(String, String)>,
) -> Vec<String> {
    let field = |f: &str| format!("{prefix}{f}");
    let mut channels = Vec::new();
    match (
        body.get("channels").filter(|v| multi && !v.is_null()),
        body.get("channel").filter(|v| !v.is_null()),
    ) {
        (Some(Value::Array(list)), _) => {
            for c in list {
                match c {
                    Value::String(s) => channels.push(s.clone()),
                    _ => errors.push((
                        field("channels"),
                        "The channels field must hold strings.".into(),
                    )),
                }
            }
            if list.len() > MAX_CHANNELS_PER_EVENT {
                errors.push((
                    field("channels"),
                    format!(
                        "The channels field must not have more than {MAX_CHANNELS_PER_EVENT} items."
                    ),
                ));
            }
        }
        (Some(_), _) => errors.push((
            field("channels"),
            "The channels field must be an array.".into(),
        )),
        (None, Some(Value::String(s))) => channels.push(s.clone()),
        (None, Some(_)) => errors.push((
            field("channel"),
            "The channel field must be a string.".into(),
        )),
        (None, None) => {
            let msg = if multi {
                "The channels field is required when channel is not present."
            } else {
                "The channel field is required."
            };
            errors.push((
                field(if multi { "channels" } else { "channel" }),
                msg.into(),
            ));
        }
    }
    channels
}

fn check_names(event: &Event<'_>) -> Option<Response> {
    event
        .channels
        .iter()
        .find(|c| !channel::valid_api_name(c))
        .map(|c| {
            bad_request(&format!(
                "Invalid channel name {c:?}: use 1 to 164 of A-Z a-z 0-9 _ - = @ , . ;"
            ))
        })
}

fn info_attrs(info: Option<&str>) -> Vec<&str> {
    info.map(|i| i.split(',').map(str::trim).collect())
        .unwrap_or_default()
}

fn events(hub: &mut Hub, app: AppId, now: u64, body: &Map<String, Value>) -> Response {
    let event = match parse_event(body, "", true) {
        Ok(e) => e,
        Err(errors) => return invalid(errors),
    };
    if let Some(bad) = check_names(&event) {
        return bad;
    }
    hub.trigger(
        now,
        app,
        &event.channels,
        event.name,
        event.data,
        event.socket_id,
    );
    match event.info {
        None => Response::json(200, "{}"),
        Some(info) => {
            let attrs = info_attrs(Some(info));
            let channels: Map<String, Value> = event
                .channels
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        Value::Object(hub.channel_info(now, app, c, &attrs)),
                    )
                })
                .collect();
            ok(json!({ "channels": channels }))
        }
    }
}

fn batch_events(hub: &mut Hub, app: AppId, now: u64, body: &Map<String, Value>) -> Response {
    let Some(Value::Array(batch)) = body.get("batch") else {
        return invalid(vec![(
            "batch".into(),
            "The batch field is required and must be an array.".into(),
        )]);
    };
    let mut events = Vec::with_capacity(batch.len());
    let mut errors = Vec::new();
    for (i, item) in batch.iter().enumerate() {
        match item {
            Value::Object(obj) => match parse_event(obj, &format!("batch.{i}."), false) {
                Ok(e) => events.push(e),
                Err(e) => errors.extend(e),
            },
            _ => errors.push((
                format!("batch.{i}"),
                "Each batch item must be an object.".into(),
            )),
        }
    }
    if !errors.is_empty() {
        return invalid(errors);
    }
    if let Some(bad) = events.iter().find_map(check_names) {
        return bad;
    }
    for e in &events {
        hub.trigger(now, app, &e.channels, e.name, e.data, e.socket_id);
    }
    if events.iter().all(|e| e.info.is_none()) {
        return Response::json(200, r#"{"batch":{}}"#);
    }
    let list: Vec<Value> = events
        .iter()
        .map(|e| {
            let attrs = info_attrs(e.info);
            let ch = e.channels.first().map(String::as_str).unwrap_or("");
            Value::Object(if attrs.is_empty() {
                Map::new()
            } else {
                hub.channel_info(now, app, ch, &attrs)
            })
        })
        .collect();
    ok(json!({ "batch": list }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = route("/apps/123/events").unwrap();
        assert_eq!(
            (r.endpoint, r.app_id.as_deref()),
            (Endpoint::Events, Some("123"))
        );
        assert_eq!(
            route("/apps/1/channels/presence-x/users").unwrap().endpoint,
            Endpoint::ChannelUsers
        );
        assert_eq!(route("/apps/1/channels/a%2Bb").unwrap().param, "a+b");
        assert_eq!(
            route("/apps/1/users/456/terminate_connections")
                .unwrap()
                .param,
            "456"
        );
        // reference 9, UsersTerminateControllerTest 1: an unmatched route
        assert_eq!(
            route("/apps/1/channels/users/not-a-user/terminate_connections"),
            None
        );
        assert_eq!(route("/apps//events"), None);
        assert_eq!(route("/app/key"), None);
    }

    #[test]
    fn routes_terminate_without_an_app_id() {
        let r = route("/users/a%2Bb/terminate_connections").unwrap();
        assert_eq!(
            (r.endpoint, r.app_id, r.param.as_str()),
            (Endpoint::TerminateUser, None, "a+b")
        );
        for path in [
            "/users//terminate_connections",
            "/users/42/terminate_connections/",
            "/users/42",
            "/x/users/42/terminate_connections",
        ] {
            assert_eq!(route(path), None, "{path}");
        }
    }

    const NOW: i64 = 1_700_000_000;

    fn hub() -> Hub {
        let apps = vec![
            crate::pusher::App::new("1", "key-1", "secret-1"),
            crate::pusher::App::new("2", "key-2", "secret-2"),
        ];
        Hub::new(apps, 1, false)
    }

    fn request(method: &str, path: &str, query: String, body: &[u8]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query,
            version_minor: 1,
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }

    /// A request signed for (key, secret), with `extra` query params, answered by `handle`.
    fn call(method: &str, path: &str, extra: &[(&str, &str)], key: &str, secret: &str) -> Response {
        let body: &[u8] = if method == "POST" { b"{}" } else { b"" };
        let q = auth::sign_api_request(method, path, extra, body, key, secret, NOW);
        handle(&request(method, path, q, body), path, &mut hub(), 0, NOW).1
    }

    #[test]
    fn terminate_without_an_app_id_finds_the_app_by_its_signed_key() {
        let path = "/users/42/terminate_connections";
        let ok = call("POST", path, &[], "key-2", "secret-2");
        assert_eq!((ok.status, ok.body.as_slice()), (200, &b"{}"[..]));
        let wrong_secret = call("POST", path, &[], "key-2", "secret-1");
        assert_eq!(wrong_secret.status, 401);
        assert_eq!(wrong_secret.body, b"Authentication signature invalid.");
        let unknown = call("POST", path, &[], "key-3", "secret-2");
        assert_eq!(
            (unknown.status, unknown.body.as_slice()),
            (401, &b"Unknown auth_key."[..])
        );
        let unsigned = handle(
            &request("POST", path, String::new(), b"{}"),
            path,
            &mut hub(),
            0,
            NOW,
        )
        .1;
        assert_eq!(unsigned.status, 401);
        assert_eq!(unsigned.body, b"Authentication signature invalid.");
        let get = call("GET", path, &[], "key-2", "secret-2");
        assert_eq!(get.status, 405);
    }

    #[test]
    fn a_get_that_signs_the_md5_of_its_empty_body_is_answered() {
        let md5 = [
            ("body_md5", "d41d8cd98f00b204e9800998ecf8427e"),
            ("info", "user_count"),
        ];
        let r = call("GET", "/apps/1/channels", &md5, "key-1", "secret-1");
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &br#"{"channels":{}}"#[..])
        );
        let wrong = [("body_md5", "99914b932bd37a50b983c5e7c90ae93b")];
        let r = call("GET", "/apps/1/channels", &wrong, "key-1", "secret-1");
        assert_eq!(r.status, 401);
        assert_eq!(
            r.body,
            b"body_md5 does not match the MD5 of the request body."
        );
    }
}
