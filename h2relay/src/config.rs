//! Settings of the downstream (server) side and of upstream pools.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::frame::MIN_MAX_FRAME_SIZE;
use crate::limits::Limits;
use crate::relay::Stats;

/// The downstream side's settings; what it advertises in SETTINGS and the limits it keeps.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// SETTINGS_MAX_CONCURRENT_STREAMS; streams beyond it get RST_STREAM(REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: the request bytes a client may send on a stream ahead of
    /// the upstream taking them, so the most the relay holds per stream in that direction.
    pub initial_stream_window: u32,
    /// The connection receive window (opened as bytes are taken off the socket).
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE.
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (decoded size; larger requests get 431).
    pub max_header_list_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE (the HPACK table the client may make us keep).
    pub header_table_size: u32,
    /// Largest compressed header block (HEADERS + CONTINUATION) before GOAWAY(ENHANCE_YOUR_CALM).
    pub max_header_block: usize,
    /// Most CONTINUATION frames in one header block before GOAWAY(ENHANCE_YOUR_CALM).
    pub max_continuation_frames: u32,
    /// Flood and rapid-reset limits.
    pub limits: Limits,
    /// A connection without a stream this long is closed (GOAWAY NO_ERROR); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Counters shared by every connection served with this config.
    pub stats: Arc<Stats>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_concurrent_streams: 100,
            initial_stream_window: 256 * 1024,
            connection_window: 4 * 1024 * 1024,
            max_frame_size: MIN_MAX_FRAME_SIZE,
            max_header_list_size: 16 * 1024,
            header_table_size: 4096,
            max_header_block: 64 * 1024,
            max_continuation_frames: 32,
            limits: Limits::default(),
            idle_timeout: None,
            stats: Arc::new(Stats::default()),
        }
    }
}

/// Settings of an upstream pool and of each of its connections.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Connections per upstream address; streams go to the one with the fewest outstanding.
    pub connections: usize,
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise: the response bytes an upstream may send on a
    /// stream ahead of the client taking them.
    pub initial_stream_window: u32,
    pub connection_window: u32,
    pub max_frame_size: u32,
    pub max_header_list_size: u32,
    pub header_table_size: u32,
    pub max_header_block: usize,
    /// Streams per connection assumed until the upstream's SETTINGS arrive.
    pub assumed_max_concurrent_streams: u32,
    pub connect_timeout: Duration,
    /// `:scheme` of upstream requests.
    pub scheme: Bytes,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        let workers = tokio::runtime::Handle::try_current().map(|h| h.metrics().num_workers()).unwrap_or(2);
        UpstreamConfig {
            connections: workers.max(2),
            initial_stream_window: 256 * 1024,
            connection_window: 4 * 1024 * 1024,
            max_frame_size: MIN_MAX_FRAME_SIZE,
            max_header_list_size: 64 * 1024,
            header_table_size: 4096,
            max_header_block: 256 * 1024,
            assumed_max_concurrent_streams: 100,
            connect_timeout: Duration::from_secs(5),
            scheme: Bytes::from_static(b"http"),
        }
    }
}

/// What both sides share once set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalSettings {
    pub initial_stream_window: u32,
    pub connection_window: u32,
    pub max_frame_size: u32,
    pub max_header_list_size: u32,
    pub header_table_size: u32,
    pub max_header_block: usize,
    pub max_continuation_frames: u32,
    pub limits: Limits,
    pub idle_timeout: Option<Duration>,
}

/// Windows below the protocol's initial 65,535 would make the peer's first bytes (sent before
/// our SETTINGS arrive) flow-control errors.
const MIN_WINDOW: u32 = 65_535;

impl From<&ServerConfig> for LocalSettings {
    fn from(c: &ServerConfig) -> Self {
        LocalSettings {
            initial_stream_window: c.initial_stream_window.clamp(MIN_WINDOW, crate::frame::MAX_WINDOW),
            connection_window: c.connection_window.clamp(MIN_WINDOW, crate::frame::MAX_WINDOW),
            max_frame_size: c.max_frame_size.clamp(MIN_MAX_FRAME_SIZE, crate::frame::MAX_MAX_FRAME_SIZE),
            max_header_list_size: c.max_header_list_size,
            header_table_size: c.header_table_size,
            max_header_block: c.max_header_block,
            max_continuation_frames: c.max_continuation_frames,
            limits: c.limits,
            idle_timeout: c.idle_timeout,
        }
    }
}

impl From<&UpstreamConfig> for LocalSettings {
    fn from(c: &UpstreamConfig) -> Self {
        LocalSettings {
            initial_stream_window: c.initial_stream_window.clamp(MIN_WINDOW, crate::frame::MAX_WINDOW),
            connection_window: c.connection_window.clamp(MIN_WINDOW, crate::frame::MAX_WINDOW),
            max_frame_size: c.max_frame_size.clamp(MIN_MAX_FRAME_SIZE, crate::frame::MAX_MAX_FRAME_SIZE),
            max_header_list_size: c.max_header_list_size,
            header_table_size: c.header_table_size,
            max_header_block: c.max_header_block,
            max_continuation_frames: u32::MAX,
            limits: Limits::default(),
            idle_timeout: None,
        }
    }
}
