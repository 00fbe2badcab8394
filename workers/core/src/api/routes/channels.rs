//! Channels and going live: create (within the account's quota), read (with live status and
//! viewers), rotate the stream key, issue a signed ingest URL with the exact ffmpeg command
//! and the gateway's RTMP(S) and SRT settings, list live channels, and connect to a
//! channel's (or the lobby's) WebSocket.

use std::collections::BTreeMap;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::api::edge::{cache_key, from_cache};
use crate::api::links;
use crate::api::{self, Request, Response, RoomUpgrade};
use crate::error::ApiError;
use crate::model::gateway::GatewaySettings;
use crate::model::ids;
use crate::model::role::{Principal, Role};
use crate::model::room::{
    LastSummary, LiveSummary, Refusal, RoomRequest, RoomResponse, RoomStatus, LOBBY,
};
use crate::model::signed_url::{Scope, UrlToken};
use crate::ports::{CachedObject, Live as _, Platform};
use crate::room;
use crate::services::edge_cache;
use crate::store::channels::{self, Channel};

/// The body of `POST /api/channels`.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NewChannel {
    /// 1 to 100 characters, not only whitespace (surrounding whitespace is trimmed).
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 100), pattern(r"\S"))
    )]
    pub name: String,
    /// At most 2000 characters.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(max = 2000)))]
    pub description: String,
}

/// A channel with its live status, as the catalogue's channel pages list it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ListedChannel {
    /// Identifier (`ch_...`).
    pub id: String,
    /// Owner.
    pub owner_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Whether a broadcast is live.
    pub live: bool,
    /// The live broadcast.
    pub broadcast: Option<LiveSummary>,
    /// Connected viewers.
    pub viewers: u64,
}

/// A channel with its live status, its last ingest refusal and its last broadcast.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelView {
    /// The channel and its live status.
    #[serde(flatten)]
    pub channel: ListedChannel,
    /// The last ingest refusal, if recent.
    pub ingest_refused: Option<Refusal>,
    /// The last ended broadcast, once its video exists.
    pub last_broadcast: Option<LastSummary>,
}

/// The new stream-key version after a rotation.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StreamKeyVersion {
    /// The version ingest URLs must now carry.
    pub stream_key_version: i64,
}

/// A signed ingest URL, the ffmpeg command that pushes to it, and the gateway's settings.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IngestSettings {
    /// Where to `PUT` segments and playlists (`.../index.m3u8`).
    pub ingest_url: String,
    /// When the URL expires, Unix seconds.
    pub expires_at: u64,
    /// An ffmpeg command that pushes HLS to the URL.
    pub ffmpeg_command: String,
    /// The ingest gateway's RTMP(S) and SRT settings, for the protocols it offers.
    #[serde(flatten)]
    pub gateway: GatewaySettings,
}

/// The channels live now.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LiveList {
    /// Newest first.
    pub channels: Vec<LiveChannel>,
}

/// A live channel in [`LiveList`].
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LiveChannel {
    /// The channel.
    pub channel_id: String,
    /// Its name.
    pub name: String,
    /// The live broadcast.
    pub broadcast_id: String,
    /// Start, Unix ms.
    pub started_at_ms: u64,
    /// Connected viewers.
    pub viewers: u64,
    /// A signed URL of its thumbnail.
    pub thumbnail_url: String,
}

fn now_ms<P: Platform>(p: &P) -> u64 {
    p.clock().now_ms()
}

/// Loads a channel by a path id; 404 when the id is malformed or unknown.
///
/// # Errors
/// 404, or what the catalogue reports.
pub async fn load<P: Platform>(p: &P, id: &str) -> Result<Channel, ApiError> {
    if !ids::is_id(id, "ch") {
        return Err(ApiError::NotFound(format!("no channel {id}")));
    }
    channels::by_id(p.sql(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no channel {id}")))
}

fn require_owner(principal: &Principal, channel: &Channel) -> Result<(), ApiError> {
    if channel.owner_id == principal.user_id || principal.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the channel's owner may do this".into(),
        ))
    }
}

/// The channel's live status from its room.
///
/// # Errors
/// What the room reports.
pub async fn status<P: Platform>(p: &P, channel_id: &str) -> Result<RoomStatus, ApiError> {
    let now_ms = now_ms(p);
    match p
        .live()
        .call(channel_id, &RoomRequest::Status { now_ms })
        .await?
    {
        RoomResponse::Status(status) => Ok(status),
        other => Err(ApiError::Internal(format!(
            "unexpected room answer {other:?}"
        ))),
    }
}

/// `channel` as listings show it, with `live` (the broadcast, if any) and `viewers`.
pub fn listed_channel(channel: Channel, live: Option<LiveSummary>, viewers: u64) -> ListedChannel {
    ListedChannel {
        id: channel.id,
        owner_id: channel.owner_id,
        name: channel.name,
        description: channel.description,
        created_at: channel.created_at,
        live: live.is_some(),
        broadcast: live,
        viewers,
    }
}

fn channel_view(channel: Channel, status: RoomStatus) -> ChannelView {
    ChannelView {
        channel: listed_channel(channel, status.live, status.viewers),
        ingest_refused: status.ingest_refused,
        last_broadcast: status.last_broadcast,
    }
}

/// `POST /api/channels {name, description?}` (broadcaster): 201 with the channel.
pub async fn create<P: Platform>(
    p: &P,
    principal: &Principal,
    request: &Request,
) -> Result<Response, ApiError> {
    let body: NewChannel = api::parse_json(request)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "a channel name has 1 to 100 characters",
        ));
    }
    if body.description.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "invalid_description",
            "descriptions have at most 2000 characters",
        ));
    }
    let channel = Channel {
        id: p.entropy().new_id("ch"),
        owner_id: principal.user_id.clone(),
        name: name.to_owned(),
        description: body.description.trim().to_owned(),
        stream_key_version: 1,
        created_at: now_ms(p) as i64,
    };
    let limit = p.config().max_channels_per_user;
    if !channels::create(p.sql(), &channel, limit).await? {
        return Err(ApiError::Unprocessable {
            code: "quota_exceeded",
            message: format!("an account has at most {limit} channels; delete one first"),
        });
    }
    let status = RoomStatus {
        live: None,
        viewers: 0,
        ingest_refused: None,
        last_broadcast: None,
    };
    Ok(api::json(
        StatusCode::CREATED,
        &channel_view(channel, status),
    ))
}

/// `GET /api/channels/{id}`: the channel with its live status, viewers and any recent
/// ingest refusal.
pub async fn get<P: Platform>(p: &P, id: &str) -> Result<Response, ApiError> {
    let channel = load(p, id).await?;
    let status = status(p, &channel.id).await?;
    Ok(api::json(StatusCode::OK, &channel_view(channel, status)))
}

/// `POST /api/channels/{id}/stream-key/rotate` (owner): invalidates every ingest URL issued
/// so far, at once: the channel's room, which checks every ingest request, is told the new
/// version before the answer (a 503 when it cannot be told; rotating again is safe).
pub async fn rotate_stream_key<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let channel = load(p, id).await?;
    require_owner(principal, &channel)?;
    let version = channels::rotate_stream_key(p.sql(), &channel.id).await?;
    p.live()
        .call(&channel.id, &RoomRequest::SetKeyVersion { version })
        .await?;
    Ok(api::json(
        StatusCode::OK,
        &StreamKeyVersion {
            stream_key_version: version,
        },
    ))
}

/// `POST /api/channels/{id}/ingest` (owner): a signed ingest URL, its expiry and the ffmpeg
/// command that pushes to it, and, for each protocol the ingest gateway offers
/// ([`crate::config::names::GATEWAY_RTMP_URL`] and its siblings), what an encoder types to
/// publish through it (`rtmp`, `rtmps`, `srt`; the stream key is the URL's token).
pub async fn ingest_url<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let channel = load(p, id).await?;
    require_owner(principal, &channel)?;
    let exp = now_ms(p) / 1000 + p.config().ingest_url_ttl_s;
    let token = UrlToken {
        scope: Scope::Ingest {
            channel_id: channel.id.clone(),
            key_version: channel.stream_key_version,
            session: p.entropy().new_id("ses"),
        },
        viewer: None,
        exp,
    }
    .sign(p.config().url_signing_secret.as_bytes());
    let url = format!("{}/ingest/{token}/index.m3u8", api::origin(request));
    let command = format!(
        "ffmpeg -re -i INPUT -c:v libx264 -preset veryfast -tune zerolatency -g 60 -keyint_min 60 \
         -sc_threshold 0 -c:a aac -ar 48000 -b:a 128k -f hls -hls_time 2 -hls_list_size 6 \
         -method PUT '{url}'"
    );
    let body = IngestSettings {
        gateway: GatewaySettings::for_key(&p.config().gateway, &token),
        ingest_url: url,
        expires_at: exp,
        ffmpeg_command: command,
    };
    Ok(api::json(StatusCode::OK, &body))
}

/// How long the live list stays in the edge cache, in ms.
const LIVE_LIST_TTL_MS: u64 = 2_000;

/// `GET /api/live`: the live channels with their viewer counts; a snapshot from the edge
/// cache, rebuilt from one lobby call at most every 2 s per location.
pub async fn live_channels<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let key = cache_key(request, "api/live");
    let (object, status) = edge_cache::get_or_fill(p, &key, || async {
        let RoomResponse::Lobby { channels, .. } =
            p.live().call(LOBBY, &RoomRequest::LobbyList).await?
        else {
            return Err(ApiError::Internal("unexpected lobby answer".into()));
        };
        // One call: the lobby keeps each channel's count as its room tells it.
        let out: Vec<LiveChannel> = channels
            .into_iter()
            .map(|entry| LiveChannel {
                thumbnail_url: links::thumbnail_url(p, &entry.channel_id),
                channel_id: entry.channel_id,
                name: entry.name,
                broadcast_id: entry.broadcast_id,
                started_at_ms: entry.started_at_ms,
                viewers: entry.viewers,
            })
            .collect();
        let body = serde_json::to_vec(&LiveList { channels: out })
            .map_err(|e| ApiError::Internal(format!("response encoding: {e}")))?;
        Ok(CachedObject {
            content_type: "application/json".into(),
            body,
            expires_at_ms: p.clock().now_ms() + LIVE_LIST_TTL_MS,
        })
    })
    .await?;
    // Clients do not keep it: the edge does.
    Ok(from_cache(object, status, "no-store"))
}

fn upgrade(
    request: &Request,
    room: String,
    shard: u32,
    room_sockets: Option<u64>,
) -> Result<Response, ApiError> {
    let is_websocket = request
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        return Err(ApiError::bad_request(
            "websocket_required",
            "this route upgrades to a WebSocket",
        ));
    }
    let mut response = api::json(
        StatusCode::SWITCHING_PROTOCOLS,
        &serde_json::json!({ "room": room }),
    );
    response.extensions_mut().insert(RoomUpgrade {
        room,
        shard,
        room_sockets,
    });
    Ok(response)
}

/// `GET /api/channels/{id}/ws`: joins the channel's room (viewer count, live/ended pushes),
/// or one of its presence shards when the channel has many viewers.
pub async fn socket<P: Platform>(p: &P, id: &str, request: &Request) -> Result<Response, ApiError> {
    let channel = load(p, id).await?;
    let shard = presence_shard(p, request, &channel.id).await;
    // The room itself keeps at most a shard's worth and sends further joins on to shards.
    let room_sockets = (shard == 0).then_some(p.config().presence_shard_sockets);
    upgrade(
        request,
        room::shard_room(&channel.id, shard),
        shard,
        room_sockets,
    )
}

/// `GET /api/live/ws`: joins the lobby (channels going live and ending).
pub fn lobby_socket(request: &Request) -> Result<Response, ApiError> {
    upgrade(request, LOBBY.to_owned(), 0, None)
}

/// How long the edge keeps the live channels' presence shard counts, in ms.
const SHARD_COUNTS_TTL_MS: u64 = 2_000;

/// The presence shard a new socket of `channel_id` joins: for a big channel, a random one of
/// the shards its audience needs ([`room::join_shards`] of the lobby's count, or of the
/// audience the lobby expects from the channel's last big broadcast while that is larger, so
/// that the audience waiting for a big channel and its first joins are spread too; read from
/// an edge-cached map of the big channels, rebuilt from one lobby call at most every 2 s per
/// location) other than the room itself, which is left to ingest and the playlists; 0, the
/// room, for a channel that is not big, or when the lobby cannot be read (a join never fails
/// on it).
async fn presence_shard<P: Platform>(p: &P, request: &Request, channel_id: &str) -> u32 {
    let per_shard = p.config().presence_shard_sockets;
    let key = cache_key(request, "presence/shards");
    let filled = edge_cache::get_or_fill(p, &key, || async {
        let RoomResponse::Lobby { channels, expected } =
            p.live().call(LOBBY, &RoomRequest::LobbyList).await?
        else {
            return Err(ApiError::Internal("unexpected lobby answer".into()));
        };
        let mut audiences = expected;
        for entry in channels {
            let audience = audiences.entry(entry.channel_id).or_default();
            *audience = (*audience).max(entry.viewers);
        }
        let big: BTreeMap<String, u32> = audiences
            .into_iter()
            .map(|(channel_id, viewers)| (channel_id, room::join_shards(viewers, per_shard)))
            .filter(|(_, shards)| *shards > 1)
            .collect();
        Ok(CachedObject {
            content_type: "application/json".into(),
            body: serde_json::to_vec(&big)
                .map_err(|e| ApiError::Internal(format!("shard counts: {e}")))?,
            expires_at_ms: p.clock().now_ms() + SHARD_COUNTS_TTL_MS,
        })
    })
    .await;
    let shards = filled
        .ok()
        .and_then(|(object, _)| serde_json::from_slice::<BTreeMap<String, u32>>(&object.body).ok())
        .and_then(|big| big.get(channel_id).copied())
        .unwrap_or(1);
    if shards <= 1 {
        return 0;
    }
    let mut random = [0u8; 4];
    p.entropy().fill(&mut random);
    room::pick_shard(shards, u32::from_le_bytes(random))
}
