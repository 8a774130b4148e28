//! Events into channels: the HTTP API's triggers (`POST /events`,
//! `/batch_events`, `sendToUser`) and `terminate_connections`, and the one
//! delivery every event goes through (API, client events, other nodes),
//! which also keeps the last event of cache channels.
//!
//! An event is delivered here to this node's subscribers at once, then
//! published for the other nodes (`cluster`), which deliver it to theirs;
//! a `*_local` variant is what a message from another node runs. Auth and
//! request parsing are the API's (`crate::api`); this module trusts its
//! arguments.

use serde_json::Value;

use super::channel::{self, CACHE_TTL_MS, Cached, Channel};
use super::cluster::envelope::Body;
use super::truncate_bytes;
use super::{AppId, ConnId, Frame, Hub, Output, PusherError, message, parse_socket_id};
use crate::websocket;

impl Hub {
    /// Send `json` to every subscriber of `name` except `except`, and keep it
    /// as the cached event of a cache channel.
    pub(super) fn deliver(
        &mut self,
        now: u64,
        app: AppId,
        name: &str,
        json: &[u8],
        except: Option<ConnId>,
        cache_as: Option<(&str, &Value)>,
    ) -> usize {
        let kind = channel::Kind::of(name);
        let frame: Frame = websocket::text_frame(json).into();
        if kind.cache {
            let key = self.channel_key(app, name);
            let ch = self.apps[app]
                .channels
                .entry(key)
                .or_insert_with(|| Channel::new(name));
            let (event, data) = cache_as.map_or((String::new(), String::new()), |(e, d)| {
                let data = match d {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (e.to_string(), data)
            });
            ch.cache = Some(Box::new(Cached {
                event,
                data,
                message: frame.clone(),
                expires_at: now + CACHE_TTL_MS,
            }));
            let expiry = now + CACHE_TTL_MS;
            self.next_cache_sweep = Some(self.next_cache_sweep.map_or(expiry, |t| t.min(expiry)));
        }
        let Some(ch) = self.apps[app].channels.get(name) else {
            return 0;
        };
        if self.debug {
            crate::log_debug!(
                "Broadcasting To {name} ({} connections): {}",
                ch.len(),
                truncate_bytes(json, 200)
            );
        }
        let mut n = 0;
        for &s in &ch.subs {
            if Some(s) != except {
                self.out.push_back(Output::Send(s, frame.clone()));
                n += 1;
            }
        }
        self.stats.messages_sent += n as u64;
        n
    }

    /// Trigger `event` on each channel (`POST /events`, `/batch_events`,
    /// `sendToUser`). `except` is a socket id to leave out. Returns deliveries.
    pub fn trigger(
        &mut self,
        now: u64,
        app: AppId,
        channels: &[String],
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> usize {
        let n = self.trigger_local(now, app, channels, event, data, except);
        if self.cluster.is_some() {
            self.publish(Body::Event {
                app: self.apps[app].config.id.clone(),
                channels: channels.to_vec(),
                event: event.to_string(),
                data: data.to_string(),
                socket_id: except.map(str::to_string),
            });
        }
        n
    }

    /// [`Hub::trigger`] for this node's subscribers only.
    pub(super) fn trigger_local(
        &mut self,
        now: u64,
        app: AppId,
        channels: &[String],
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> usize {
        let except = except
            .and_then(parse_socket_id)
            .and_then(|id| self.by_socket.get(&id).copied());
        let mut n = 0;
        for name in channels {
            let json = message::event(event, Some(data), Some(name));
            n += self.deliver(
                now,
                app,
                name,
                &json,
                except,
                Some((event, &Value::String(data.to_string()))),
            );
        }
        n
    }

    /// Close every connection of `user_id`: signed in as that user, or a
    /// presence member with that `user_id` on any channel. Returns how many.
    pub fn terminate_user(&mut self, now: u64, app: AppId, user_id: &str) -> usize {
        let n = self.terminate_user_local(now, app, user_id);
        if self.cluster.is_some() {
            self.publish(Body::Terminate {
                app: self.apps[app].config.id.clone(),
                user_id: user_id.to_string(),
            });
        }
        n
    }

    /// [`Hub::terminate_user`] for this node's connections only.
    pub(super) fn terminate_user_local(&mut self, now: u64, app: AppId, user_id: &str) -> usize {
        let mut victims = Vec::new();
        for c in self.conns.iter().flatten() {
            let id = c.id;
            if c.app != app {
                continue;
            }
            let signed_in = c.user.as_deref() == Some(user_id);
            let presence = || {
                c.channels.iter().any(|n| {
                    self.apps[app]
                        .channels
                        .get(n)
                        .and_then(|ch| ch.presence.as_ref())
                        .and_then(|p| p.by_conn.get(&id))
                        .is_some_and(|m| m.key == user_id)
                })
            };
            if signed_in || presence() {
                victims.push(id);
            }
        }
        for &conn in &victims {
            self.send_error(conn, PusherError::Terminated);
            self.terminate(now, conn, PusherError::Terminated);
        }
        victims.len()
    }
}
