//! Follow graphs for tests and benchmarks: [`power_law_graph`] draws one whose follower
//! counts follow a power law (a few celebrities, a long tail), [`seed_graph`] writes it
//! straight into a store in big batches (fresh users only: the counters are set, not added
//! to), and [`seed_graph_grpc`] makes it through the API (a gateway or a server), so that a
//! benchmark's setup builds the graph the loadtest scenario format cannot describe.

use futures::StreamExt;
use meshwork_common::clock::Clock;
use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::record::Record;
use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::{DynStore, Mutation};
use pb::timeline_client::TimelineClient;

use crate::keys;
use crate::model::{FollowRecord, UserRecord};

/// A follow graph: user handles and (follower, followee) index pairs, without self-follows
/// or repeats.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub users: Vec<String>,
    pub edges: Vec<(u32, u32)>,
}

impl Graph {
    /// Returns the graph where `followers` users (`<prefix>f<i>`) all follow one author
    /// (`<prefix>a`), the author being user 0.
    pub fn star(prefix: &str, followers: usize) -> Graph {
        let mut users = vec![format!("{prefix}a")];
        users.extend((0..followers).map(|i| format!("{prefix}f{i}")));
        let edges = (1..=followers as u32).map(|f| (f, 0)).collect();
        Graph { users, edges }
    }

    /// Returns how many followers each user has.
    pub fn follower_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.users.len()];
        for (_, followee) in &self.edges {
            counts[*followee as usize] += 1;
        }
        counts
    }
}

/// A small deterministic generator (splitmix64), so that a graph is the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Returns a graph of `users` users (`<prefix><i>`, `prefix` at most 9 characters of
/// `[a-z0-9_]`) where each follows about `mean_following` others chosen by a Zipf law of
/// exponent `exponent` over the user's rank (user 0 is the most followed): with 10,000 users,
/// 20 follows each and exponent 1, the top few users have thousands of followers (the
/// celebrities) and most have a handful.
pub fn power_law_graph(prefix: &str, users: usize, mean_following: usize, exponent: f64, seed: u64) -> Graph {
    let handles: Vec<String> = (0..users).map(|i| format!("{prefix}{i}")).collect();
    let mut cumulative = Vec::with_capacity(users);
    let mut total = 0.0;
    for rank in 0..users {
        total += 1.0 / ((rank + 1) as f64).powf(exponent);
        cumulative.push(total);
    }
    let mut rng = SplitMix(seed);
    let mut edges = Vec::new();
    for follower in 0..users {
        // 1 to 2 x mean follows, so the mean is about `mean_following`.
        let want = 1 + (rng.next() % (2 * mean_following.max(1) as u64)) as usize;
        let mut chosen = std::collections::BTreeSet::new();
        for _ in 0..want * 3 {
            if chosen.len() >= want.min(users.saturating_sub(1)) {
                break;
            }
            let x = rng.unit() * total;
            let target = cumulative.partition_point(|c| *c < x).min(users - 1);
            if target != follower {
                chosen.insert(target as u32);
            }
        }
        edges.extend(chosen.into_iter().map(|t| (follower as u32, t)));
    }
    Graph { users: handles, edges }
}

/// Writes `graph` straight into `store`: user records with their inbox floors, both keys of
/// every edge and the follower/following counters, in as few writes as the backend allows. For users that do
/// not exist yet (records and counters are overwritten, not merged).
pub async fn seed_graph(store: &DynStore, clock: &dyn Clock, graph: &Graph) -> ServiceResult<()> {
    let now = clock.now_ms();
    let edge = FollowRecord { since_ms: now }.encode()?;
    let mut following = vec![0i64; graph.users.len()];
    let mut followers = vec![0i64; graph.users.len()];
    let n = graph.users.len();
    if let Some((f, t)) = graph.edges.iter().find(|(f, t)| *f as usize >= n || *t as usize >= n || f == t) {
        return Err(ServiceError::invalid("graph", format!("edge ({f}, {t}) is a self-follow or names no user")));
    }
    let mut mutations = Vec::with_capacity(graph.users.len() * 4 + graph.edges.len() * 2);
    for (f, t) in &graph.edges {
        let (user, target) = (&graph.users[*f as usize], &graph.users[*t as usize]);
        mutations.push(Mutation::put(keys::following(user, target), edge.clone()));
        mutations.push(Mutation::put(keys::follower(target, user), edge.clone()));
        following[*f as usize] += 1;
        followers[*t as usize] += 1;
    }
    for (i, handle) in graph.users.iter().enumerate() {
        let record = UserRecord { handle: handle.clone(), display_name: String::new(), created_ms: now };
        mutations.push(Mutation::put(keys::user(handle), record.encode()?));
        // A new user's inbox misses nothing (see `keys::inbox_floor`).
        mutations.push(Mutation::put(keys::inbox_floor(handle), 0u64.to_be_bytes().to_vec()));
        for (kind, n) in [("followers", followers[i]), ("following", following[i])] {
            mutations
                .push(Mutation::put(keys::shard(&keys::user_count_prefix(handle, kind), 0), n.to_be_bytes().to_vec()));
        }
    }
    let per = store.limits().max_ops_per_write.clamp(1, 2000);
    let mut writes = Vec::new();
    while !mutations.is_empty() {
        let rest = mutations.split_off(mutations.len().min(per));
        writes.push(std::mem::replace(&mut mutations, rest));
    }
    let mut results =
        futures::stream::iter(writes.into_iter().map(|batch| store.write(Vec::new(), batch))).buffer_unordered(8);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// Makes `graph` through the Timeline API on `channel` (a gateway or a server): CreateUser for
/// each user (an existing one is fine), then Follow for each edge, `concurrency` calls at a
/// time. Returns the first failure.
pub async fn seed_graph_grpc(
    channel: tonic::transport::Channel,
    graph: &Graph,
    concurrency: usize,
) -> Result<(), tonic::Status> {
    let client = TimelineClient::new(channel);
    let mut creates = futures::stream::iter(graph.users.iter().map(|handle| {
        let mut client = client.clone();
        async move {
            let request = pb::CreateUserRequest { handle: handle.clone(), display_name: String::new() };
            match client.create_user(request).await {
                Ok(_) => Ok(()),
                Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
                Err(s) => Err(s),
            }
        }
    }))
    .buffer_unordered(concurrency.max(1));
    while let Some(result) = creates.next().await {
        result?;
    }
    let mut follows = futures::stream::iter(graph.edges.iter().map(|(f, t)| {
        let mut client = client.clone();
        let request =
            pb::FollowRequest { user: graph.users[*f as usize].clone(), target: graph.users[*t as usize].clone() };
        async move { client.follow(request).await.map(|_| ()) }
    }))
    .buffer_unordered(concurrency.max(1));
    while let Some(result) = follows.next().await {
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_law_graphs_have_celebrities_and_a_long_tail() {
        let g = power_law_graph("u", 10_000, 20, 1.0, 7);
        let mut counts = g.follower_counts();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        assert!(counts[0] > 5_000, "top user has {} followers", counts[0]);
        assert!(counts[5_000] < 20, "median user has {} followers", counts[5_000]);
        assert!(g.edges.iter().all(|(f, t)| f != t));
        let mean = g.edges.len() / g.users.len();
        assert!((10..=30).contains(&mean), "mean following {mean}");
        // Deterministic.
        assert_eq!(power_law_graph("u", 100, 5, 1.0, 7).edges, power_law_graph("u", 100, 5, 1.0, 7).edges);
    }
}
