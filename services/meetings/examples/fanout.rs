//! Measures the event fan-out of one meeting: N participants on `StreamMeeting` streams, E
//! chat messages sent as fast as the meeting takes them, and how fast every stream receives
//! every one. Prints events appended per second and events delivered per second (N x E over
//! the time until the last stream has the last event).
//!
//! The load tool (`loadtest/`) drives unary methods only, so this is the meetings row's
//! measurement. In-process on a memory store by default, or against a running mesh through
//! its gateway:
//!
//! ```text
//! cargo run -p meshwork-meetings --example fanout -- --participants 100 --events 500
//! cargo run -p meshwork-meetings --example fanout -- --target http://127.0.0.1:8080
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use meshwork_common::fields::timestamp;
use meshwork_common::{Clock, SystemClock};
use meshwork_proto::pb::meetings::v1 as pb;
use pb::meetings_client::MeetingsClient;
use pb::stream_meeting_request::Body;
use pb::stream_meeting_response::Body as Out;
use tonic::transport::Channel;

struct Args {
    participants: usize,
    events: usize,
    senders: usize,
    target: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args { participants: 100, events: 500, senders: 4, target: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--participants" => args.participants = value.parse()?,
            "--events" => args.events = value.parse()?,
            "--senders" => args.senders = value.parse()?,
            "--target" => args.target = Some(value),
            other => bail!("unknown flag {other} (--participants N, --events N, --senders N, --target URL)"),
        }
    }
    if args.participants == 0 || args.events == 0 || args.senders == 0 || args.senders > args.participants {
        bail!("--participants, --events and --senders must be positive, senders at most participants");
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let (_server, channel) = match &args.target {
        Some(url) => (None, Channel::from_shared(url.clone())?.connect().await?),
        None => {
            let ctx = meshwork_test_support::context(meshwork_test_support::memory_store());
            let server = meshwork_test_support::TestServer::hosting(meshwork_meetings::hosted, &ctx).await;
            let channel = server.channel.clone();
            (Some(server), channel)
        }
    };
    let mut c = MeetingsClient::new(channel);
    let run = meshwork_common::random_id("", 6);
    let host = format!("fanout-host-{run}");
    let meeting = c
        .create_meeting(pb::CreateMeetingRequest {
            request_id: format!("fanout-{run}"),
            host: host.clone(),
            topic: "fan-out benchmark".into(),
            start: Some(timestamp(SystemClock.now_ms())),
            duration: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
            passcode: String::new(),
            waiting_room: false,
            settings: Some(pb::MeetingSettings { max_participants: 1000, ..Default::default() }),
        })
        .await?
        .into_inner()
        .meeting
        .context("no meeting")?
        .meeting_id;
    let users: Vec<String> = (0..args.participants).map(|i| format!("fanout-{run}-{i}")).collect();
    for u in &users {
        c.join(pb::JoinRequest { meeting_id: meeting.clone(), user_id: u.clone(), passcode: String::new() }).await?;
    }
    let head = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await?.into_inner();
    let from = head.meeting.context("no meeting")?.last_sequence + 1;
    let last = from + args.events as u64 - 1;

    // Every participant's stream counts what it receives until the last chat.
    let mut receivers = Vec::new();
    let mut keep_open = Vec::new();
    for u in &users {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let hello = pb::Hello { meeting_id: meeting.clone(), user_id: u.clone(), from_sequence: from };
        tx.send(pb::StreamMeetingRequest { r#ref: String::new(), body: Some(Body::Hello(hello)) }).await?;
        let mut stream = c.stream_meeting(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        keep_open.push(tx);
        receivers.push(tokio::spawn(async move {
            let mut got = 0u64;
            while let Some(message) = stream.message().await? {
                if let Some(Out::Event(e)) = message.body {
                    got += 1;
                    if e.sequence >= last {
                        return Ok::<_, anyhow::Error>((got, Instant::now()));
                    }
                }
            }
            bail!("a stream ended early after {got} events")
        }));
    }

    let started = Instant::now();
    let per_sender = args.events / args.senders;
    let senders = (0..args.senders).map(|s| {
        let (mut c, meeting, user) = (c.clone(), meeting.clone(), users[s].clone());
        let count = if s == 0 { args.events - per_sender * (args.senders - 1) } else { per_sender };
        tokio::spawn(async move {
            for i in 0..count {
                let chat =
                    pb::SendChatRequest { meeting_id: meeting.clone(), user_id: user.clone(), text: format!("m{i}") };
                c.send_chat(chat).await?;
            }
            Ok::<_, tonic::Status>(())
        })
    });
    for sent in futures::future::join_all(senders).await {
        sent??;
    }
    let appended = started.elapsed();
    let mut delivered = 0u64;
    let mut done = started;
    for r in receivers {
        let (got, at) = tokio::time::timeout(Duration::from_secs(120), r).await???;
        delivered += got;
        done = done.max(at);
    }
    let drained = done - started;
    c.end_meeting(pb::MeetingControlRequest { meeting_id: meeting, acting_user_id: host }).await?;
    println!(
        "participants={} events={} appended_in={:.3}s append_rate={:.0}/s delivered={} drained_in={:.3}s delivery_rate={:.0}/s",
        args.participants,
        args.events,
        appended.as_secs_f64(),
        args.events as f64 / appended.as_secs_f64(),
        delivered,
        drained.as_secs_f64(),
        delivered as f64 / drained.as_secs_f64()
    );
    drop(keep_open);
    Ok(())
}
