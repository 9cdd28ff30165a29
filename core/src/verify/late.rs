//! Records left unsigned while the server went on receiving: the Python reference is
//! `otaudit.latesigning.LateSigning`, which this follows step for step.

/// A record that stayed unsigned while the server received one `later_ns` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateRecord {
    pub seq: i64,
    pub received_ns: i64,
    pub checkpoint_size: i64,
    pub later_seq: i64,
    pub later_ns: i64,
}

/// Finds the first record signed too late, fed records in seq order.
#[derive(Debug, Clone)]
pub struct LateSigning {
    ends: Vec<i64>,
    max_ns: i128,
    at: usize,
    /// (seq, received_ns) of the records whose receive time is lower than every one
    /// before them in the current checkpoint range (falling times).
    minima: Vec<(i64, i64)>,
    done: bool,
    pub found: Option<LateRecord>,
}

impl LateSigning {
    /// `checkpoint_sizes`: every stored checkpoint's tree size; `max_delay_s`: the bound.
    pub fn new(checkpoint_sizes: &[i64], max_delay_s: i64) -> Self {
        let mut ends: Vec<i64> = checkpoint_sizes
            .iter()
            .copied()
            .filter(|s| *s > 0)
            .collect();
        ends.sort_unstable();
        ends.dedup();
        LateSigning {
            ends,
            max_ns: i128::from(max_delay_s) * 1_000_000_000,
            at: 0,
            minima: Vec::new(),
            done: false,
            found: None,
        }
    }

    /// Take the next record: its seq, sealed receive time, and whether a client sent it.
    pub fn see(&mut self, seq: i64, received_ns: i64, client: bool) {
        if self.done {
            return;
        }
        if self.at < self.ends.len() && seq >= self.ends[self.at] {
            if self.found.is_some() {
                self.done = true;
                return;
            }
            while self.at < self.ends.len() && seq >= self.ends[self.at] {
                self.at += 1;
            }
            self.minima.clear();
        }
        if self.at == self.ends.len() {
            self.done = true;
            return;
        }
        if client && !self.minima.is_empty() {
            // The first earlier record of this range received more than the bound before
            // (the minima's times fall: those received before `bound` are a suffix).
            let bound = i128::from(received_ns) - self.max_ns;
            let i = self
                .minima
                .partition_point(|&(_, t)| i128::from(t) >= bound);
            if i < self.minima.len() {
                let (first, first_ns) = self.minima[i];
                if self.found.is_none_or(|f| first < f.seq) {
                    self.found = Some(LateRecord {
                        seq: first,
                        received_ns: first_ns,
                        checkpoint_size: self.ends[self.at],
                        later_seq: seq,
                        later_ns: received_ns,
                    });
                }
            }
        }
        if self.minima.last().is_none_or(|&(_, t)| received_ns < t) {
            self.minima.push((seq, received_ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_record_signed_with_a_much_later_client_record_is_found() {
        let mut late = LateSigning::new(&[0, 5], 10);
        late.see(0, 100 * S, true);
        late.see(1, 101 * S, true);
        late.see(2, 105 * S, false);
        late.see(3, 120 * S, true);
        let found = late.found.expect("late");
        assert_eq!(
            (found.seq, found.later_seq, found.checkpoint_size),
            (0, 3, 5)
        );
    }

    #[test]
    fn own_records_and_small_gaps_are_not_reported() {
        let mut late = LateSigning::new(&[3], 10);
        late.see(0, 100 * S, true);
        late.see(1, 200 * S, false);
        late.see(2, 105 * S, true);
        assert!(late.found.is_none());
    }

    #[test]
    fn records_under_no_checkpoint_are_not_reported() {
        let mut late = LateSigning::new(&[1], 10);
        late.see(0, 100 * S, true);
        late.see(1, 100 * S, true);
        late.see(2, 900 * S, true);
        assert!(late.found.is_none());
    }
}
