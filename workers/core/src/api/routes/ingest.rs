//! Ingest: what `ffmpeg -f hls -method PUT`, the ingest gateway and the broadcast page send
//! to a signed ingest URL. Segments — MPEG-TS (`*.ts`), CMAF media (`*.m4s`) and init
//! (`*.mp4`) segments — are checked (container, size; an init segment is read for its
//! codecs) and stored under `live/{channel}/{broadcast}/{file}`. Low-latency parts
//! (`{rendition}_{n}.part{i}.m4s?duration_us=..&part_target_us=..&independent=1`, see
//! [`PartName`]) are stored beside them and listed in the room's part window at once; a
//! pusher may send a part as it is made, in chunks (`?offset=N`, handed to the part's
//! viewers by the room), then commit it (`?from_chunks=SIZE&duration_us=..`, with its last
//! chunk or no body). A media playlist (`{rendition}.m3u8`) is parsed with `m3u8-rs` and
//! moves that rendition's live window; a multivariant playlist sets the ladder. A refused
//! request stores nothing. ffmpeg ignores 401/403, so refusals the broadcaster can be told
//! about are also recorded in the channel's status.

use http::StatusCode;
use serde::Serialize;

use crate::api::{self, Request, Response};
use crate::error::ApiError;
use crate::model::hls::{self, MediaError, Pushed, SegmentKind};
use crate::model::isobmff;
use crate::model::llhls::PartName;
use crate::model::room::{
    BroadcastLimits, Contradiction, RoomRequest, RoomResponse, StartedBroadcast, StoredPart,
};
use crate::model::signed_url::{Scope, UrlToken, UrlTokenError};
use crate::ports::{Blobs as _, Live as _, Platform};
use crate::services::broadcasts;
use crate::services::videos;
use crate::store::channels;

/// Largest pushed playlist accepted, in bytes.
const MAX_PLAYLIST_BYTES: usize = 256 * 1024;
/// The channel's thumbnail, as the broadcast page sends it while live.
const THUMBNAIL_FILE: &str = "thumb.jpg";
/// Largest thumbnail accepted, in bytes.
const MAX_THUMBNAIL_BYTES: usize = 256 * 1024;

/// A stored segment (201) or live thumbnail (201).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IngestStored {
    /// The broadcast the segment belongs to (absent for a thumbnail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcast_id: Option<String>,
    /// The file name stored.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A playlist taken (200).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlaylistTaken {
    /// Segments listed in the live window so far.
    pub listed: u64,
    /// Whether it ended the broadcast (`#EXT-X-ENDLIST`).
    pub ended: bool,
}

/// A verified ingest request's channel, stream-key version and session.
struct Ingest {
    channel_id: String,
    key_version: i64,
    session: String,
}

async fn record_refusal<P: Platform>(p: &P, channel_id: &str, reason: &str) {
    let request = RoomRequest::IngestRefused {
        reason: reason.to_owned(),
        now_ms: p.clock().now_ms(),
    };
    // Best effort: the refusal itself is the answer; the status note is a courtesy.
    let _ = p.live().call(channel_id, &request).await;
}

/// Verifies the token of an ingest URL.
async fn authorize<P: Platform>(p: &P, token: &str) -> Result<Ingest, ApiError> {
    let now_s = p.clock().now_ms() / 1000;
    let token = match UrlToken::verify(token, p.config().url_signing_secret.as_bytes(), now_s) {
        Ok(token) => token,
        Err(UrlTokenError::Expired(token)) => {
            if let Scope::Ingest { channel_id, .. } = token.scope {
                record_refusal(p, &channel_id, "the ingest URL expired; request a new one").await;
            }
            return Err(ApiError::Forbidden("the ingest URL expired".into()));
        }
        Err(e) => return Err(ApiError::Forbidden(e.to_string())),
    };
    let Scope::Ingest {
        channel_id,
        key_version,
        session,
    } = token.scope
    else {
        return Err(ApiError::Forbidden("this URL does not allow ingest".into()));
    };
    // The stream-key version is checked by the channel's room with each segment and
    // playlist ([`call_room`]), not here: ingest reads no catalogue row.
    Ok(Ingest {
        channel_id,
        key_version,
        session,
    })
}

/// Sends an ingest request to the channel's room. A room that does not know the channel's
/// stream-key version yet learns it from the catalogue once (the only catalogue read of
/// ingest, once per room); a refused version is a 403.
async fn call_room<P: Platform>(
    p: &P,
    ingest: &Ingest,
    request: &RoomRequest,
) -> Result<RoomResponse, ApiError> {
    let mut answer = p.live().call(&ingest.channel_id, request).await?;
    if answer == RoomResponse::KeyUnknown {
        let channel = channels::by_id(p.sql(), &ingest.channel_id)
            .await?
            .ok_or_else(|| ApiError::Forbidden("the channel no longer exists".into()))?;
        let set = RoomRequest::SetKeyVersion {
            version: channel.stream_key_version,
        };
        p.live().call(&ingest.channel_id, &set).await?;
        answer = p.live().call(&ingest.channel_id, request).await?;
    }
    match answer {
        RoomResponse::KeyRefused { reason } => Err(ApiError::Forbidden(reason)),
        RoomResponse::KeyUnknown => Err(ApiError::Internal(
            "the room did not keep the stream-key version".into(),
        )),
        other => Ok(other),
    }
}

/// `PUT /ingest/{token}/{file}`: a segment or the playlist.
pub async fn put<P: Platform>(
    p: &P,
    token: &str,
    file: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let ingest = authorize(p, token).await?;
    if file == THUMBNAIL_FILE {
        put_thumbnail(p, &ingest, request.body()).await
    } else if let Some(name) = PartName::parse(file) {
        let query = request.uri().query().unwrap_or_default().to_owned();
        match part_upload(&query)? {
            PartUpload::Whole => {
                let part = part_of(name, file, &query)?;
                put_part(p, &ingest, part, request.into_body()).await
            }
            PartUpload::Chunk { offset } => {
                put_part_chunk(p, &ingest, file, offset, request.into_body()).await
            }
            PartUpload::Commit { last: None, .. } if !request.body().is_empty() => {
                Err(ApiError::bad_request(
                    "invalid_part",
                    "a commit's body is the part's last chunk: name its offset",
                ))
            }
            PartUpload::Commit { last, size } => {
                let part = part_of(name, file, &query)?;
                let last = last.map(|offset| (offset, request.into_body()));
                commit_part(p, &ingest, part, last, size).await
            }
        }
    } else if [".ts", ".m4s", ".mp4"]
        .iter()
        .any(|ext| file.ends_with(ext))
    {
        match from_parts(request.uri().query().unwrap_or_default())? {
            Some(count) if request.body().is_empty() && file.ends_with(".m4s") => {
                let body = segment_of_parts(p, &ingest, file, count).await?;
                put_segment(p, &ingest, file, body).await
            }
            Some(_) => Err(ApiError::bad_request(
                "invalid_request",
                "from_parts is for an empty PUT of a .m4s segment whose parts are stored",
            )),
            None => put_segment(p, &ingest, file, request.into_body()).await,
        }
    } else if file.ends_with(".m3u8") {
        put_playlist(p, &ingest, file, request.body()).await
    } else {
        Err(ApiError::bad_request(
            "unsupported_file",
            "ingest accepts .ts, .m4s and .mp4 segments, .m3u8 playlists and thumb.jpg",
        ))
    }
}

/// A refused medium or playlist as the 422 the pusher is told.
fn unprocessable(e: MediaError) -> ApiError {
    ApiError::Unprocessable {
        code: e.code(),
        message: e.to_string(),
    }
}

/// A room's [`RoomResponse::Invalid`] as the 422 the pusher is told.
fn refused(code: Contradiction, reason: String) -> ApiError {
    ApiError::Unprocessable {
        code: code.code(),
        message: reason,
    }
}

/// `DELETE /ingest/{token}/{file}` (ffmpeg's `delete_segments`): accepted and ignored,
/// because segments belong to the recording; a URL whose stream key was rotated is refused
/// like its PUTs.
pub async fn delete<P: Platform>(p: &P, token: &str) -> Result<Response, ApiError> {
    let ingest = authorize(p, token).await?;
    let check = RoomRequest::CheckKey {
        key_version: ingest.key_version,
        now_ms: p.clock().now_ms(),
    };
    call_room(p, &ingest, &check).await?;
    Ok(api::with_body(
        StatusCode::NO_CONTENT,
        "application/json",
        Vec::new(),
    ))
}

/// `thumb.jpg`: a small JPEG of the camera, shown on the home page while the channel is
/// live (it replaces the channel's thumbnail).
async fn put_thumbnail<P: Platform>(
    p: &P,
    ingest: &Ingest,
    body: &[u8],
) -> Result<Response, ApiError> {
    if body.len() > MAX_THUMBNAIL_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "thumbnail is {} bytes; the limit is {MAX_THUMBNAIL_BYTES}",
            body.len()
        )));
    }
    if !body.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(ApiError::Unprocessable {
            code: "invalid_media",
            message: "thumb.jpg must be a JPEG image".into(),
        });
    }
    let check = RoomRequest::CheckKey {
        key_version: ingest.key_version,
        now_ms: p.clock().now_ms(),
    };
    call_room(p, ingest, &check).await?;
    p.blobs()
        .put(
            &videos::thumbnail_key(&ingest.channel_id),
            body.to_vec(),
            "image/jpeg",
        )
        .await?;
    Ok(api::json(
        StatusCode::CREATED,
        &IngestStored {
            broadcast_id: None,
            file: THUMBNAIL_FILE.to_owned(),
            size: body.len() as u64,
        },
    ))
}

async fn put_segment<P: Platform>(
    p: &P,
    ingest: &Ingest,
    file: &str,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let Some(kind) = SegmentKind::of(file) else {
        return Err(ApiError::bad_request(
            "invalid_segment_name",
            "segment names are 1 to 64 of A-Z a-z 0-9 _ - followed by .ts, .m4s or .mp4",
        ));
    };
    let limit = p.config().max_segment_bytes;
    if body.len() as u64 > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "segment is {} bytes; the limit is {limit}",
            body.len()
        )));
    }
    let init = match kind {
        SegmentKind::Ts => hls::check_transport_stream(&body).map(|()| None),
        SegmentKind::Cmaf => isobmff::check_media_segment(&body).map(|()| None),
        SegmentKind::Init => isobmff::read_init(&body).map(Some),
    }
    .map_err(unprocessable)?;
    let size = body.len() as u64;
    let (broadcast_id, started) = begin_segment(p, ingest, file, false, size).await?;
    let key = videos::segment_key(&ingest.channel_id, &broadcast_id, file);
    p.blobs().put(&key, body, kind.content_type()).await?;
    let stored = RoomRequest::SegmentStored {
        session: ingest.session.clone(),
        broadcast_id: broadcast_id.clone(),
        file: file.to_owned(),
        size,
        init,
        now_ms: p.clock().now_ms(),
    };
    let ended = match p.live().call(&ingest.channel_id, &stored).await? {
        RoomResponse::Stored { ended } => ended,
        other => {
            return Err(ApiError::Internal(format!(
                "unexpected room answer {other:?}"
            )))
        }
    };
    if let Some(started) = started {
        broadcasts::broadcast_started(p, &started).await?;
    }
    if let Some(ended) = ended {
        broadcasts::confirm_ended(p, &ended).await?;
    }
    Ok(api::json(
        StatusCode::CREATED,
        &IngestStored {
            broadcast_id: Some(broadcast_id),
            file: file.to_owned(),
            size,
        },
    ))
}

/// Tells the room a segment (or, with `part`, one of its parts) of `file`, `size` bytes, is
/// coming: the live broadcast it belongs to (a new one when it starts one, then also
/// returned); 409 for another pusher, 422 `quota_exceeded` past the broadcast's quota.
async fn begin_segment<P: Platform>(
    p: &P,
    ingest: &Ingest,
    file: &str,
    part: bool,
    size: u64,
) -> Result<(String, Option<StartedBroadcast>), ApiError> {
    let begin = RoomRequest::BeginSegment {
        channel_id: ingest.channel_id.clone(),
        session: ingest.session.clone(),
        key_version: ingest.key_version,
        file: file.to_owned(),
        new_broadcast_id: p.entropy().new_id("brd"),
        now_ms: p.clock().now_ms(),
        idle_timeout_ms: p.config().live_idle_timeout_s * 1000,
        part,
        size,
        limits: BroadcastLimits {
            segments: p.config().max_broadcast_segments,
            bytes: p.config().max_broadcast_bytes,
        },
    };
    match call_room(p, ingest, &begin).await? {
        RoomResponse::Began {
            broadcast_id,
            started,
        } => Ok((broadcast_id, started)),
        RoomResponse::Conflict { reason } => Err(ApiError::Conflict(reason)),
        RoomResponse::Invalid { code, reason } => Err(refused(code, reason)),
        other => Err(ApiError::Internal(format!(
            "unexpected room answer {other:?}"
        ))),
    }
}

/// Most parts one segment may be assembled from (`?from_parts=`).
const MAX_PARTS_PER_SEGMENT: u64 = 64;

/// `from_parts=N` of a segment PUT's query: the segment is its `N` stored parts, joined.
fn from_parts(query: &str) -> Result<Option<u64>, ApiError> {
    let Some(raw) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("from_parts="))
    else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if (1..=MAX_PARTS_PER_SEGMENT).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::bad_request(
            "invalid_request",
            format!("from_parts is a count of parts, 1 to {MAX_PARTS_PER_SEGMENT}"),
        )),
    }
}

/// The bytes of segment `file` made of its `count` stored low-latency parts, joined in
/// order (a pusher that sent every part sends this instead of the segment's bytes again);
/// 422 `parts_missing` when one is not stored (the pusher then sends the bytes), 413 past
/// `MAX_SEGMENT_BYTES`. The segment's own checks follow in [`put_segment`].
async fn segment_of_parts<P: Platform>(
    p: &P,
    ingest: &Ingest,
    file: &str,
    count: u64,
) -> Result<Vec<u8>, ApiError> {
    // The live broadcast the parts went to (asked as for a part: no segment record yet).
    let (broadcast_id, started) = begin_segment(p, ingest, file, true, 0).await?;
    if let Some(started) = started {
        broadcasts::broadcast_started(p, &started).await?;
    }
    let limit = p.config().max_segment_bytes;
    let mut body = Vec::new();
    for index in 0..count {
        let part = PartName::file_of(file, index);
        let key = videos::segment_key(&ingest.channel_id, &broadcast_id, &part);
        let Some(blob) = p.blobs().get(&key, None).await? else {
            return Err(ApiError::Unprocessable {
                code: "parts_missing",
                message: format!("part {part} is not stored: send the segment's bytes"),
            });
        };
        body.extend_from_slice(&blob.bytes);
        if body.len() as u64 > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the parts of {file} add up to more than {limit} bytes"
            )));
        }
    }
    Ok(body)
}

/// Longest part accepted, in microseconds.
const MAX_PART_US: u64 = 10_000_000;

/// The part a file name and its query describe (`duration_us`, `part_target_us`,
/// `independent`); a 400 `invalid_part` when the query is missing or out of range.
fn part_of(name: PartName, file: &str, query: &str) -> Result<StoredPart, ApiError> {
    let invalid = |message: &str| ApiError::bad_request("invalid_part", message.to_owned());
    let (mut duration_us, mut target_us, mut independent) = (None, None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let micros = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|v| (1..=MAX_PART_US).contains(v))
                .ok_or_else(|| invalid("part durations are whole microseconds, 1 to 10000000"))
        };
        match key {
            "duration_us" => duration_us = Some(micros()?),
            "part_target_us" => target_us = Some(micros()?),
            "independent" => {
                independent = match value {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(invalid("independent is 1 or 0")),
                }
            }
            _ => {}
        }
    }
    let duration_us = duration_us.ok_or_else(|| invalid("a part needs ?duration_us="))?;
    Ok(StoredPart {
        rendition: name.rendition,
        segment: name.segment,
        sequence: name.sequence,
        index: name.index,
        file: file.to_owned(),
        duration_us,
        target_us: target_us.unwrap_or(duration_us).max(duration_us),
        independent,
    })
}

/// How a part is uploaded: whole; as one chunk of it (`?offset=N`: the chunk's first byte's
/// place in the part); or committed once its chunks are sent (`?from_chunks=SIZE`, the
/// part's size, with its last chunk and that chunk's `offset`, or with no body).
enum PartUpload {
    Whole,
    Chunk { offset: u64 },
    Commit { last: Option<u64>, size: u64 },
}

/// The [`PartUpload`] a part PUT's query names; 400 `invalid_part` for a bad number.
fn part_upload(query: &str) -> Result<PartUpload, ApiError> {
    let number = |key: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .map(|raw| {
                raw.parse::<u64>().map_err(|_| {
                    ApiError::bad_request("invalid_part", format!("{key} is a number of bytes"))
                })
            })
            .transpose()
    };
    Ok(match (number("offset")?, number("from_chunks")?) {
        (None, None) => PartUpload::Whole,
        (Some(offset), None) => PartUpload::Chunk { offset },
        (last, Some(size)) => PartUpload::Commit { last, size },
    })
}

/// The most bytes of a part sent in chunks: the room keeps them in one value of its
/// storage (2 MB at most on Cloudflare, base64). A part of 1 MiB is 25 Mbit/s at 1/3 s;
/// a bigger one is sent whole.
const MAX_CHUNKED_PART_BYTES: u64 = 1024 * 1024;

/// A part of `size` bytes: 413 past `MAX_SEGMENT_BYTES`.
fn check_part_size<P: Platform>(p: &P, size: u64) -> Result<(), ApiError> {
    let limit = p.config().max_segment_bytes;
    if size > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "the part is {size} bytes; the limit is {limit}"
        )));
    }
    Ok(())
}

/// A low-latency part sent whole: checked like a CMAF segment, stored, and listed in the
/// room's part window (it may start the broadcast; it is not part of the recording, whose
/// segments are pushed whole).
async fn put_part<P: Platform>(
    p: &P,
    ingest: &Ingest,
    part: StoredPart,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    check_part_size(p, body.len() as u64)?;
    isobmff::check_media_segment(&body).map_err(unprocessable)?;
    let size = body.len() as u64;
    let begun = begin_segment(p, ingest, &part.file, true, size).await?;
    store_part(p, ingest, begun, (part, false), body).await
}

/// Stores a part whose upload began (`begun`: its broadcast, and the broadcast it started
/// if any) in the blob store and lists it in the room's part window (`from_chunks`: the
/// part is the chunks the room holds).
async fn store_part<P: Platform>(
    p: &P,
    ingest: &Ingest,
    (broadcast_id, started): (String, Option<StartedBroadcast>),
    (part, from_chunks): (StoredPart, bool),
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let size = body.len() as u64;
    let file = part.file.clone();
    let key = videos::segment_key(&ingest.channel_id, &broadcast_id, &file);
    p.blobs().put(&key, body, hls::CMAF_CONTENT_TYPE).await?;
    let stored = RoomRequest::PartStored {
        session: ingest.session.clone(),
        broadcast_id: broadcast_id.clone(),
        part,
        from_chunks,
        now_ms: p.clock().now_ms(),
    };
    p.live().call(&ingest.channel_id, &stored).await?;
    if let Some(started) = started {
        broadcasts::broadcast_started(p, &started).await?;
    }
    Ok(api::json(
        StatusCode::CREATED,
        &IngestStored {
            broadcast_id: Some(broadcast_id),
            file,
            size,
        },
    ))
}

/// Checks a chunk at `offset` of a part: whole media boxes (422), the part then at most
/// [`MAX_CHUNKED_PART_BYTES`] and `MAX_SEGMENT_BYTES` (413). Answers where the chunk ends.
fn check_chunk<P: Platform>(p: &P, offset: u64, body: &[u8]) -> Result<u64, ApiError> {
    let end = offset.saturating_add(body.len() as u64);
    check_part_size(p, end)?;
    if end > MAX_CHUNKED_PART_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "a part sent in chunks is at most {MAX_CHUNKED_PART_BYTES} bytes: send it whole"
        )));
    }
    isobmff::check_media_segment(body).map_err(unprocessable)?;
    Ok(end)
}

/// Hands one chunk of a part being made (whole boxes with a `moof` and an `mdat`) to the
/// room of the broadcast it began in, which gives the part's bytes to its viewers as they
/// come. 409 for a chunk that does not follow the part's bytes.
async fn send_chunk<P: Platform>(
    p: &P,
    ingest: &Ingest,
    (broadcast_id, file): (&str, &str),
    offset: u64,
    body: &[u8],
) -> Result<(), ApiError> {
    let chunk = RoomRequest::PartChunk {
        session: ingest.session.clone(),
        broadcast_id: broadcast_id.to_owned(),
        file: file.to_owned(),
        offset,
        data: body.to_vec(),
        now_ms: p.clock().now_ms(),
    };
    match p.live().call(&ingest.channel_id, &chunk).await? {
        RoomResponse::Stored { .. } => Ok(()),
        RoomResponse::Conflict { reason } => Err(ApiError::Conflict(reason)),
        other => Err(ApiError::Internal(format!(
            "unexpected room answer {other:?}"
        ))),
    }
}

/// One chunk of a part being made (`?offset=N`); the part is stored once committed.
/// 409 for a chunk that does not follow the part's bytes; 413 when the part would pass
/// [`MAX_CHUNKED_PART_BYTES`] (or `MAX_SEGMENT_BYTES`); 422 for a chunk that is not whole
/// media boxes.
async fn put_part_chunk<P: Platform>(
    p: &P,
    ingest: &Ingest,
    file: &str,
    offset: u64,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let end = check_chunk(p, offset, &body)?;
    let (broadcast_id, started) = begin_segment(p, ingest, file, true, body.len() as u64).await?;
    send_chunk(p, ingest, (&broadcast_id, file), offset, &body).await?;
    if let Some(started) = started {
        broadcasts::broadcast_started(p, &started).await?;
    }
    Ok(api::json(
        StatusCode::ACCEPTED,
        &IngestStored {
            broadcast_id: Some(broadcast_id),
            file: file.to_owned(),
            size: end,
        },
    ))
}

/// The commit of a part sent in chunks (`?from_chunks=SIZE`), with its `last` chunk and
/// that chunk's offset, if any: the part is the room's chunks, `size` bytes (422
/// `chunks_missing` when the room does not hold them all: the pusher then sends the part's
/// bytes), checked and stored like a part sent whole.
async fn commit_part<P: Platform>(
    p: &P,
    ingest: &Ingest,
    part: StoredPart,
    last: Option<(u64, Vec<u8>)>,
    size: u64,
) -> Result<Response, ApiError> {
    check_part_size(p, size)?;
    let last = last.filter(|(_, body)| !body.is_empty());
    if let Some((offset, body)) = &last {
        check_chunk(p, *offset, body)?;
    }
    let counted = last.as_ref().map_or(0, |(_, body)| body.len() as u64);
    let (broadcast_id, started) = begin_segment(p, ingest, &part.file, true, counted).await?;
    if let Some((offset, body)) = &last {
        send_chunk(p, ingest, (&broadcast_id, &part.file), *offset, body).await?;
    }
    let read = RoomRequest::PartBytes {
        broadcast_id: broadcast_id.clone(),
        file: part.file.clone(),
        from: 0,
        until_ms: 0,
    };
    let held = match p.live().call(&ingest.channel_id, &read).await? {
        RoomResponse::PartBytes { data, .. } => data,
        _ => Vec::new(),
    };
    if held.len() as u64 != size {
        return Err(ApiError::Unprocessable {
            code: "chunks_missing",
            message: format!(
                "the edge holds {} of {}'s {size} bytes: send the part's bytes",
                held.len(),
                part.file
            ),
        });
    }
    isobmff::check_media_segment(&held).map_err(unprocessable)?;
    store_part(p, ingest, (broadcast_id, started), (part, true), held).await
}

/// A media playlist (`{rendition}.m3u8`) or the multivariant playlist (any name; told by
/// its content).
async fn put_playlist<P: Platform>(
    p: &P,
    ingest: &Ingest,
    file: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    if body.len() > MAX_PLAYLIST_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "playlist is {} bytes; the limit is {MAX_PLAYLIST_BYTES}",
            body.len()
        )));
    }
    let Some(rendition) = hls::rendition_of(file) else {
        return Err(ApiError::bad_request(
            "invalid_playlist_name",
            "playlist names are 1 to 32 of A-Z a-z 0-9 _ - followed by .m3u8",
        ));
    };
    let session = ingest.session.clone();
    let (key_version, now_ms) = (ingest.key_version, p.clock().now_ms());
    let request = match hls::parse_pushed(body).map_err(unprocessable)? {
        Pushed::Media(playlist) => RoomRequest::Playlist {
            session,
            key_version,
            rendition: rendition.to_owned(),
            playlist,
            now_ms,
        },
        Pushed::Multivariant(variants) => RoomRequest::Ladder {
            session,
            key_version,
            variants,
            now_ms,
        },
    };
    let (listed, ended) = match call_room(p, ingest, &request).await? {
        RoomResponse::PlaylistAccepted { listed, ended } => (listed, ended),
        RoomResponse::Conflict { reason } => return Err(ApiError::Conflict(reason)),
        RoomResponse::Invalid { code, reason } => return Err(refused(code, reason)),
        other => {
            return Err(ApiError::Internal(format!(
                "unexpected room answer {other:?}"
            )))
        }
    };
    if let Some(ended) = &ended {
        broadcasts::confirm_ended(p, ended).await?;
    }
    Ok(api::json(
        StatusCode::OK,
        &PlaylistTaken {
            listed,
            ended: ended.is_some(),
        },
    ))
}
