//! Local search over granular neighbourhoods.
//!
//! For each customer `u` and each of its `k` nearest customers `v` (the granular neighbour
//! list), the moves that make `u` and `v` adjacent are tried, first improvement:
//! - between routes: segment exchange with segments of 0..=3 customers on each side, which
//!   covers relocate (1,0), or-opt (2..3,0), swap (1,1) and cross-exchange (a,b ≥ 1), both
//!   "after v" and "before v"; and the two 2-opt* tail exchanges;
//! - within a route: 2-opt (segment reversal) and or-opt (moving a segment of 1..=3).
//!
//! It stops when no move improves the cost. Deltas are computed in O(1) from the edges a
//! move removes and adds; only an improving move rebuilds the two routes it touches.

use crate::problem::Problem;
use crate::rng::Rng;

/// Nearest-customer lists: `near[c]` holds up to `k` other customers, closest first.
pub fn neighbours(p: &Problem, k: usize) -> Vec<Vec<usize>> {
    let n = p.len();
    let mut near = vec![Vec::new(); n];
    for (c, list) in near.iter_mut().enumerate().skip(1) {
        let mut others: Vec<usize> = (1..n).filter(|&o| o != c).collect();
        others.sort_unstable_by_key(|&o| (p.dist.get(c, o), o));
        others.truncate(k);
        *list = others;
    }
    near
}

/// Working state of the local search.
struct Ls<'a> {
    p: &'a Problem,
    routes: Vec<Vec<usize>>,
    load: Vec<i64>,
    route_of: Vec<usize>,
    pos: Vec<usize>,
}

impl<'a> Ls<'a> {
    fn d(&self, a: usize, b: usize) -> i64 {
        self.p.dist.get(a, b)
    }

    /// Node at position `i` of route `r`, the depot (0) outside the route.
    fn at(&self, r: usize, i: isize) -> usize {
        if i < 0 {
            return 0;
        }
        self.routes[r].get(i as usize).copied().unwrap_or(0)
    }

    fn reindex(&mut self, r: usize) {
        for (i, &c) in self.routes[r].iter().enumerate() {
            self.route_of[c] = r;
            self.pos[c] = i;
        }
        self.load[r] = self.routes[r].iter().map(|&c| self.p.demand[c]).sum();
    }

    fn seg_load(&self, r: usize, from: usize, len: usize) -> i64 {
        self.routes[r][from..from + len].iter().map(|&c| self.p.demand[c]).sum()
    }

    /// Exchange S1 = r1[i..i+a] (starting at u) with S2 = r2[j+1..j+1+b] (after v):
    /// S1 goes right after v, S2 takes S1's place.
    fn try_after(&mut self, u: usize, v: usize) -> bool {
        let (r1, r2) = (self.route_of[u], self.route_of[v]);
        let (i, j) = (self.pos[u], self.pos[v]);
        let (len1, len2) = (self.routes[r1].len(), self.routes[r2].len());
        for a in 1..=3usize {
            if i + a > len1 {
                break;
            }
            let q1 = self.seg_load(r1, i, a);
            let s1f = u;
            let s1l = self.routes[r1][i + a - 1];
            let prev1 = self.at(r1, i as isize - 1);
            let next1 = self.at(r1, (i + a) as isize);
            for b in 0..=3usize {
                if j + 1 + b > len2 {
                    break;
                }
                let q2 = if b > 0 { self.seg_load(r2, j + 1, b) } else { 0 };
                if self.load[r1] - q1 + q2 > self.p.capacity || self.load[r2] - q2 + q1 > self.p.capacity {
                    continue;
                }
                let after2 = self.at(r2, (j + 1 + b) as isize);
                let mut delta = -self.d(prev1, s1f) - self.d(s1l, next1);
                if b > 0 {
                    let s2f = self.routes[r2][j + 1];
                    let s2l = self.routes[r2][j + b];
                    delta += self.d(prev1, s2f) + self.d(s2l, next1);
                    delta -= self.d(v, s2f) + self.d(s2l, after2);
                } else {
                    delta += self.d(prev1, next1);
                    delta -= self.d(v, after2);
                }
                delta += self.d(v, s1f) + self.d(s1l, after2);
                if delta < 0 {
                    let s1: Vec<usize> = self.routes[r1][i..i + a].to_vec();
                    let s2: Vec<usize> = self.routes[r2][j + 1..j + 1 + b].to_vec();
                    self.routes[r1].splice(i..i + a, s2);
                    self.routes[r2].splice(j + 1..j + 1 + b, s1);
                    self.reindex(r1);
                    self.reindex(r2);
                    return true;
                }
            }
        }
        false
    }

    /// Exchange S1 = r1[i-a+1..=i] (ending at u) with S2 = r2[j-b..j] (before v):
    /// S1 goes right before v, S2 takes S1's place.
    fn try_before(&mut self, u: usize, v: usize) -> bool {
        let (r1, r2) = (self.route_of[u], self.route_of[v]);
        let (i, j) = (self.pos[u], self.pos[v]);
        for a in 1..=3usize {
            if i + 1 < a {
                break;
            }
            let st1 = i + 1 - a;
            let q1 = self.seg_load(r1, st1, a);
            let s1f = self.routes[r1][st1];
            let prev1 = self.at(r1, st1 as isize - 1);
            let next1 = self.at(r1, i as isize + 1);
            for b in 0..=3usize {
                if j < b {
                    break;
                }
                let st2 = j - b;
                let q2 = if b > 0 { self.seg_load(r2, st2, b) } else { 0 };
                if self.load[r1] - q1 + q2 > self.p.capacity || self.load[r2] - q2 + q1 > self.p.capacity {
                    continue;
                }
                let before2 = self.at(r2, st2 as isize - 1);
                let mut delta = -self.d(prev1, s1f) - self.d(u, next1);
                if b > 0 {
                    let s2f = self.routes[r2][st2];
                    let s2l = self.routes[r2][j - 1];
                    delta += self.d(prev1, s2f) + self.d(s2l, next1);
                    delta -= self.d(before2, s2f) + self.d(s2l, v);
                } else {
                    delta += self.d(prev1, next1);
                    delta -= self.d(before2, v);
                }
                delta += self.d(before2, s1f) + self.d(u, v);
                if delta < 0 {
                    let s1: Vec<usize> = self.routes[r1][st1..=i].to_vec();
                    let s2: Vec<usize> = self.routes[r2][st2..j].to_vec();
                    self.routes[r1].splice(st1..=i, s2);
                    self.routes[r2].splice(st2..j, s1);
                    self.reindex(r1);
                    self.reindex(r2);
                    return true;
                }
            }
        }
        false
    }

    /// 2-opt* tail exchanges that make u and v adjacent.
    fn try_two_opt_star(&mut self, u: usize, v: usize) -> bool {
        let (r1, r2) = (self.route_of[u], self.route_of[v]);
        let (i, j) = (self.pos[u], self.pos[v]);
        let nu = self.at(r1, i as isize + 1);
        let pv = self.at(r2, j as isize - 1);
        let head1 = self.seg_load(r1, 0, i + 1);
        let head2 = self.seg_load(r2, 0, j);
        let (l1, l2) = (self.load[r1], self.load[r2]);
        // Variant 1: r1 = head1(..=u) + r2[j..];  r2 = r2[..j] + r1[i+1..].
        if head1 + (l2 - head2) <= self.p.capacity && head2 + (l1 - head1) <= self.p.capacity {
            let delta = self.d(u, v) + self.d(pv, nu) - self.d(u, nu) - self.d(pv, v);
            if delta < 0 {
                let tail1: Vec<usize> = self.routes[r1].split_off(i + 1);
                let tail2: Vec<usize> = self.routes[r2].split_off(j);
                self.routes[r1].extend(tail2);
                self.routes[r2].extend(tail1);
                self.reindex(r1);
                self.reindex(r2);
                return true;
            }
        }
        // Variant 2: r1 = r1[..=i] + reverse(r2[..=j]); r2 = reverse(r1[i+1..]) + r2[j+1..].
        let nv = self.at(r2, j as isize + 1);
        let head2v = head2 + self.p.demand[v];
        if head1 + head2v <= self.p.capacity && (l1 - head1) + (l2 - head2v) <= self.p.capacity {
            let delta = self.d(u, v) + self.d(nu, nv) - self.d(u, nu) - self.d(v, nv);
            if delta < 0 {
                let tail1: Vec<usize> = self.routes[r1].split_off(i + 1);
                let mut head: Vec<usize> = self.routes[r2].drain(..=j).collect();
                head.reverse();
                self.routes[r1].extend(head);
                let mut t = tail1;
                t.reverse();
                t.append(&mut self.routes[r2]);
                self.routes[r2] = t;
                self.reindex(r1);
                self.reindex(r2);
                return true;
            }
        }
        false
    }

    /// 2-opt within a route, making u and v adjacent.
    fn try_two_opt(&mut self, u: usize, v: usize) -> bool {
        let r = self.route_of[u];
        let (i, j) = (self.pos[u], self.pos[v]);
        let (lo, hi) = if i < j { (i + 1, j) } else { (j, i - 1) };
        if lo >= hi {
            return false;
        }
        // Reversing r[lo..=hi] replaces edges (r[lo-1], r[lo]) and (r[hi], r[hi+1]).
        let a = self.at(r, lo as isize - 1);
        let b = self.routes[r][lo];
        let c = self.routes[r][hi];
        let e = self.at(r, hi as isize + 1);
        let delta = self.d(a, c) + self.d(b, e) - self.d(a, b) - self.d(c, e);
        if delta < 0 {
            self.routes[r][lo..=hi].reverse();
            self.reindex(r);
            return true;
        }
        false
    }

    /// Or-opt within a route: move r[i..i+a] (starting at u) right after v.
    fn try_or_opt(&mut self, u: usize, v: usize) -> bool {
        let r = self.route_of[u];
        let (i, j) = (self.pos[u], self.pos[v]);
        let len = self.routes[r].len();
        for a in 1..=3usize {
            if i + a > len {
                break;
            }
            if j + 1 >= i && j < i + a {
                continue;
            }
            let sf = u;
            let sl = self.routes[r][i + a - 1];
            let p = self.at(r, i as isize - 1);
            let nx = self.at(r, (i + a) as isize);
            let w = self.at(r, j as isize + 1);
            for reversed in [false, true] {
                let (first, last) = if reversed { (sl, sf) } else { (sf, sl) };
                let delta =
                    self.d(p, nx) - self.d(p, sf) - self.d(sl, nx) + self.d(v, first) + self.d(last, w) - self.d(v, w);
                if delta < 0 {
                    let mut seg: Vec<usize> = self.routes[r].drain(i..i + a).collect();
                    if reversed {
                        seg.reverse();
                    }
                    let at = if j > i { j + 1 - a } else { j + 1 };
                    self.routes[r].splice(at..at, seg);
                    self.reindex(r);
                    return true;
                }
            }
        }
        false
    }
}

/// Improves `routes` until no granular move improves it; returns the improved routes.
pub fn improve(p: &Problem, routes: Vec<Vec<usize>>, near: &[Vec<usize>], rng: &mut Rng) -> Vec<Vec<usize>> {
    let n = p.len();
    let mut ls = Ls { p, load: vec![0; routes.len()], routes, route_of: vec![0; n], pos: vec![0; n] };
    for r in 0..ls.routes.len() {
        ls.reindex(r);
    }
    let mut order: Vec<usize> = (1..n).collect();
    let mut improved = true;
    let mut rounds = 0;
    while improved && rounds < 1000 {
        improved = false;
        rounds += 1;
        rng.shuffle(&mut order);
        for &u in &order {
            for &v in &near[u] {
                let moved = if ls.route_of[u] == ls.route_of[v] {
                    ls.try_two_opt(u, v) || ls.try_or_opt(u, v)
                } else {
                    ls.try_after(u, v) || ls.try_before(u, v) || ls.try_two_opt_star(u, v)
                };
                if moved {
                    improved = true;
                }
            }
        }
    }
    ls.routes.retain(|r| !r.is_empty());
    ls.routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;
    use crate::construct::savings;
    use crate::problem::Metric;

    #[test]
    fn local_search_keeps_feasibility_and_never_worsens() {
        let mut rng = Rng::new(3);
        for seed in 0..5u64 {
            let mut g = Rng::new(seed);
            let coords: Vec<(f64, f64)> = (0..60).map(|_| (g.below(1000) as f64, g.below(1000) as f64)).collect();
            let mut demand: Vec<i64> = (0..60).map(|_| 1 + g.below(20) as i64).collect();
            demand[0] = 0;
            let p = Problem::from_coords("t", coords, demand, 60, Metric::Euclidean).expect("ok");
            let start = savings(&p);
            let before = p.cost(&start);
            let near = neighbours(&p, 15);
            let after = improve(&p, start, &near, &mut rng);
            let cost = p.cost(&after);
            assert!(cost <= before);
            assert_eq!(check(&p, &after, cost), Ok(cost));
        }
    }
}
