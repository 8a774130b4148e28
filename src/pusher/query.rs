//! The hub's queries: what the HTTP API and the metrics read (apps, channel
//! attributes, channel lists, presence users, connection and channel counts).
//!
//! Every query takes `&self` and changes nothing, so it may be called at any
//! time between inputs. Counts are cluster-wide where the API says so: this
//! node's part is read here, the other nodes' from the cluster's view
//! (`cluster`), answered at once without asking anyone. What the answers
//! look like on the wire (JSON bodies, status codes) is `crate::api`'s.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::channel::{self, Auth};
use super::{App, AppId, Hub};

impl Hub {
    pub fn app_by_id(&self, id: &str) -> Option<AppId> {
        self.apps.iter().position(|a| a.config.id == id)
    }

    pub fn app_by_key(&self, key: &str) -> Option<AppId> {
        self.apps.iter().position(|a| a.config.key == key)
    }

    pub fn app(&self, app: AppId) -> &App {
        &self.apps[app].config
    }

    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.iter().map(|a| &a.config)
    }

    /// Open WebSockets of an app on this node.
    pub fn connection_count(&self, app: AppId) -> u64 {
        self.apps[app].connections
    }

    /// Channel attributes for `info` (reference 4.4): `occupied`,
    /// `user_count` (presence only), `subscription_count` (non-presence only),
    /// `cache` (cache channels with a fresh cached event).
    pub fn channel_info(
        &self,
        now: u64,
        app: AppId,
        name: &str,
        info: &[&str],
    ) -> Map<String, Value> {
        let mut out = Map::new();
        let ch = self.apps[app].channels.get(name);
        let count = self.subscription_count(app, name);
        let occupied = count > 0;
        if info.contains(&"occupied") {
            out.insert("occupied".into(), Value::Bool(occupied));
        }
        let kind = channel::Kind::of(name);
        if occupied && info.contains(&"user_count") && kind.is_presence() {
            let users = self.cluster_members(app, name).len();
            out.insert("user_count".into(), Value::from(users));
        }
        if occupied && info.contains(&"subscription_count") && !kind.is_presence() {
            out.insert("subscription_count".into(), Value::from(count));
        }
        if info.contains(&"cache")
            && let Some(c) = ch.and_then(|c| c.cached(now))
        {
            let ttl = (c.expires_at.saturating_sub(now)).div_ceil(1000);
            out.insert(
                "cache".into(),
                serde_json::json!({ "event": c.event, "data": c.data, "ttl": ttl }),
            );
        }
        out
    }

    /// Occupied channels whose names start with `prefix`, with `info` attributes.
    pub fn channels(
        &self,
        now: u64,
        app: AppId,
        prefix: &str,
        info: &[&str],
    ) -> Map<String, Value> {
        let mut names: Vec<String> = self.apps[app]
            .channels
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(n, _)| n.to_string())
            .collect();
        names.extend(self.remote_channels(app));
        names.retain(|n| n.starts_with(prefix) && channel::Kind::of(n).auth != Auth::ServerToUser);
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let info = self.channel_info(now, app, &n, info);
                (n, Value::Object(info))
            })
            .collect()
    }

    /// Users of a presence channel: `Err(404)` when it does not exist,
    /// `Err(400)` when it is not a presence channel.
    pub fn channel_users(&self, app: AppId, name: &str) -> Result<Vec<Value>, u16> {
        if !channel::Kind::of(name).is_presence() {
            return Err(400);
        }
        let local = self.apps[app].channels.get(name).map_or(0, |c| c.len());
        if local == 0 && self.remote_subs(app, name) == 0 {
            return Err(404);
        }
        Ok(self
            .cluster_members(app, name)
            .iter()
            .map(|m| serde_json::json!({ "id": m.user_id }))
            .collect())
    }

    /// How many channels of each type exist (for metrics).
    pub fn channel_counts(&self) -> HashMap<&'static str, u64> {
        let mut out = HashMap::new();
        for a in &self.apps {
            for c in a.channels.values().filter(|c| !c.is_empty()) {
                *out.entry(c.kind.label()).or_default() += 1;
            }
        }
        out
    }
}
