//! A monotonic clock read from the CPU's time-stamp counter: the fleet's clock source.
//!
//! The scheduler reads the clock at every VM switch, and the host clock (`Instant`, a vDSO
//! call that orders the TSC read and converts it) was about a sixth of a switch. This clock
//! reads the TSC and scales it from an anchor, a pair (TSC, host-clock time) that the first
//! reader after a period of 10 ms takes again, with the rate measured over the period before.
//! So it departs from the host clock by at most the rate error over one period, and follows
//! changes of the host clock's rate within a period.
//!
//! Used only where the kernel itself keeps time with the TSC (its clocksource is `tsc`): the
//! kernel has then checked that the counter is invariant and synchronised between CPUs, so
//! readings on different threads are comparable. Elsewhere, and until the first rate is
//! measured, every reading is the host clock's.
//!
//! Monotonic: a new anchor's time is the later of the host clock and the old anchor's line
//! at that count, so time jumps forward to the host clock but never back; a line that ran
//! ahead runs slower over the next period until the host clock catches up, as NTP slews a
//! clock rather than stepping it back. (A reader that loaded the old anchor just before it
//! changed reads the old line a few nanoseconds on, which can differ from the new line by
//! the rate correction over those nanoseconds; a VM keeps its `TIME_US` from going back in
//! any case.)

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

/// How long an anchor serves before the next reader takes a new one, in nanoseconds.
const PERIOD_NANOS: u64 = 10_000_000;

/// A rate is measured over at least this long (nanoseconds): the host clock's jitter over
/// it is some parts per million.
const MIN_RATE_NANOS: u64 = 5_000_000;

/// A pair of host-clock reads around a TSC read further apart than this (nanoseconds) was
/// interrupted: the pair would skew the anchor and the next rate (by up to half of it, over a
/// period), so it is not used. An uninterrupted pair takes well under 100 ns.
const MAX_PAIR_NANOS: u64 = 2_000;

/// Fixed-point scale of rates: nanoseconds per tick, times 2^32.
const SCALE_BITS: u32 = 32;

/// Where readings come from: the TSC and the host clock, or a test's fakes.
pub trait Counters {
    /// The time-stamp counter.
    fn ticks(&self) -> u64;
    /// The host clock, in nanoseconds since some origin.
    fn host_nanos(&self) -> u64;
}

/// The CPU's TSC and `Instant`.
#[derive(Debug)]
pub struct HostCounters {
    origin: Instant,
}

impl Counters for HostCounters {
    fn ticks(&self) -> u64 {
        rdtsc()
    }

    fn host_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug)]
pub struct TscClock<C = HostCounters> {
    counters: C,
    /// Whether the TSC may be used at all (see the module comment).
    usable: bool,
    /// Even when the anchor is stable, odd while it is rewritten (a sequence lock).
    seq: AtomicU64,
    ticks: AtomicU64,
    nanos: AtomicU64,
    /// Nanoseconds per tick times 2^32; 0 until the first rate is measured.
    mult: AtomicU64,
    /// Ticks an anchor serves ([`PERIOD_NANOS`] at the measured rate).
    period: AtomicU64,
    /// The (ticks, host nanoseconds) pair read at the last re-anchoring, the start of the
    /// next rate measurement; `None` until one was read uninterrupted. Its lock serialises
    /// re-anchoring.
    base: Mutex<Option<(u64, u64)>>,
}

impl TscClock {
    /// The fleet's clock: zero now.
    pub fn new() -> TscClock {
        let usable = tsc_is_clocksource();
        TscClock::with(HostCounters { origin: Instant::now() }, usable)
    }
}

impl<C: Counters> TscClock<C> {
    fn with(counters: C, usable: bool) -> TscClock<C> {
        let clock = TscClock {
            counters,
            usable,
            seq: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            mult: AtomicU64::new(0),
            period: AtomicU64::new(0),
            base: Mutex::new(None),
        };
        if usable {
            *clock.base.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = clock.pair();
        }
        clock
    }

    /// Time since the clock was created.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }

    fn now_nanos(&self) -> u64 {
        if !self.usable {
            return self.counters.host_nanos();
        }
        let Some((ticks, nanos, mult, period)) = self.anchor() else { return self.counters.host_nanos() };
        let since = self.counters.ticks().wrapping_sub(ticks);
        if mult != 0 && since < period {
            return nanos + scale(since, mult);
        }
        match self.reanchor() {
            Some(nanos) => nanos,
            // Another thread is taking the anchor: the old line, as that thread's reading
            // starts from it.
            None if mult != 0 && since <= 2 * period => nanos + scale(since, mult),
            None => self.counters.host_nanos(),
        }
    }

    /// The current anchor, or `None` while another thread rewrites it.
    fn anchor(&self) -> Option<(u64, u64, u64, u64)> {
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let anchor = (
            self.ticks.load(Ordering::Relaxed),
            self.nanos.load(Ordering::Relaxed),
            self.mult.load(Ordering::Relaxed),
            self.period.load(Ordering::Relaxed),
        );
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == before).then_some(anchor)
    }

    /// A (ticks, host nanoseconds) pair read together, or `None` if the reads were
    /// interrupted.
    fn pair(&self) -> Option<(u64, u64)> {
        let before = self.counters.host_nanos();
        let ticks = self.counters.ticks();
        let after = self.counters.host_nanos();
        (after.saturating_sub(before) <= MAX_PAIR_NANOS).then_some((ticks, before / 2 + after / 2))
    }

    /// Takes a new anchor and returns the time now; `None` if another thread is taking one.
    fn reanchor(&self) -> Option<u64> {
        let Ok(mut base) = self.base.try_lock() else { return None };
        let (ticks, nanos, mult, period) = (
            self.ticks.load(Ordering::Relaxed),
            self.nanos.load(Ordering::Relaxed),
            self.mult.load(Ordering::Relaxed),
            self.period.load(Ordering::Relaxed),
        );
        let on_old_line = |now: u64| {
            let since = now.wrapping_sub(ticks);
            (mult != 0 && since <= 2 * period).then(|| nanos + scale(since, mult))
        };
        let Some((now, host)) = self.pair() else {
            // Interrupted: keep the anchor; the next reader tries again.
            return Some(on_old_line(self.counters.ticks()).unwrap_or_else(|| self.counters.host_nanos()).max(nanos));
        };
        let Some((base_ticks, base_nanos)) = *base else {
            *base = Some((now, host));
            return Some(host.max(nanos));
        };
        let elapsed_ticks = now.wrapping_sub(base_ticks);
        let elapsed_nanos = host.saturating_sub(base_nanos);
        if elapsed_ticks == 0 || elapsed_ticks > i64::MAX as u64 {
            // The counter stopped or went back: start measuring again.
            *base = Some((now, host));
            return Some(host.max(nanos));
        }
        if elapsed_nanos < MIN_RATE_NANOS {
            // Too early to measure the first rate: the host clock's time.
            return Some(host.max(nanos));
        }
        *base = Some((now, host));
        let rate = ratio(elapsed_nanos, elapsed_ticks).max(1);
        let new_nanos = host.max(on_old_line(now).unwrap_or(nanos));
        // Ahead of the host clock: slower over the next period by the lead.
        let lead = (new_nanos - host).min(PERIOD_NANOS / 2);
        let new_mult = scale(rate, ratio(PERIOD_NANOS - lead, PERIOD_NANOS)).max(1);
        // Ticks in one period: nanoseconds over nanoseconds per tick.
        let new_period = u64::try_from((u128::from(PERIOD_NANOS) << SCALE_BITS) / u128::from(rate)).unwrap_or(u64::MAX);
        // A sequence-lock write: readers that overlap it see an odd or a changed count.
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.ticks.store(now, Ordering::Relaxed);
        self.nanos.store(new_nanos, Ordering::Relaxed);
        self.mult.store(new_mult, Ordering::Relaxed);
        self.period.store(new_period, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
        Some(new_nanos)
    }
}

/// `a / b` in the fixed point of rates.
fn ratio(a: u64, b: u64) -> u64 {
    u64::try_from((u128::from(a) << SCALE_BITS) / u128::from(b.max(1))).unwrap_or(u64::MAX)
}

/// `ticks` ticks in nanoseconds at `mult`.
fn scale(ticks: u64, mult: u64) -> u64 {
    u64::try_from((u128::from(ticks) * u128::from(mult)) >> SCALE_BITS).unwrap_or(u64::MAX)
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and reads no memory. It is usable in user
    // mode, checked once by `tsc_is_clocksource` before any call.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn rdtsc() -> u64 {
    0
}

/// Whether the kernel keeps time with the TSC and lets this process read it.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn tsc_is_clocksource() -> bool {
    let source = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    let mut state: libc::c_int = 0;
    // SAFETY: PR_GET_TSC writes one int through the pointer, which points to `state`.
    let got = unsafe { libc::prctl(libc::PR_GET_TSC, &raw mut state) };
    source.is_ok_and(|s| s.trim() == "tsc") && got == 0 && state == libc::PR_TSC_ENABLE
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn tsc_is_clocksource() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSC and host clock the test moves: `advance` moves the host clock by `nanos` and
    /// the TSC by `nanos * ticks_per_micro / 1000`.
    #[derive(Debug, Default)]
    struct Fake {
        ticks: AtomicU64,
        nanos: AtomicU64,
    }

    impl Fake {
        fn advance(&self, nanos: u64, ticks_per_micro: u64) {
            self.nanos.fetch_add(nanos, Ordering::SeqCst);
            self.ticks.fetch_add(nanos * ticks_per_micro / 1000, Ordering::SeqCst);
        }
    }

    impl Counters for &Fake {
        fn ticks(&self) -> u64 {
            self.ticks.load(Ordering::SeqCst)
        }

        fn host_nanos(&self) -> u64 {
            self.nanos.load(Ordering::SeqCst)
        }
    }

    /// Runs the clock over `fake` for `millis`, reading every 10 µs, with the TSC at
    /// `ticks_per_micro(t)` at host time `t` (ms). Returns the largest distance from the
    /// host clock after the first periods, and the last; panics if time goes back.
    fn run(fake: &Fake, millis: u64, ticks_per_micro: impl Fn(u64) -> u64) -> (u64, u64) {
        let clock = TscClock::with(fake, true);
        let mut last = 0;
        let (mut worst, mut distance) = (0, 0);
        for step in 0..millis * 100 {
            fake.advance(10_000, ticks_per_micro(step / 100));
            let now = clock.now_nanos();
            assert!(now >= last, "went back from {last} to {now} at step {step}");
            last = now;
            distance = now.abs_diff(fake.nanos.load(Ordering::SeqCst));
            if step >= 2 * PERIOD_NANOS / 10_000 {
                worst = worst.max(distance);
            }
        }
        assert_ne!(clock.mult.load(Ordering::SeqCst), 0, "no rate was measured");
        (worst, distance)
    }

    #[test]
    fn a_steady_counter_gives_the_host_clock() {
        let fake = Fake::default();
        let (worst, _) = run(&fake, 100, |_| 2_445);
        assert!(worst <= 10, "{worst} ns from the host clock");
    }

    /// The host clock's rate changes (as NTP slews it): time never goes back, the clock
    /// departs from the host clock by no more than the change over a period, and then
    /// rejoins it.
    #[test]
    fn a_change_of_rate_is_followed_without_going_back() {
        for (before, after) in [(2_445, 2_400), (2_445, 2_500)] {
            let fake = Fake::default();
            let (worst, last) = run(&fake, 300, |t| if t < 150 { before } else { after });
            // A 2 % change over one 10 ms period is 200 µs.
            assert!(worst <= 250_000, "{before} -> {after}: {worst} ns from the host clock");
            assert!(last <= 1_000, "{before} -> {after}: still {last} ns from the host clock");
        }
    }

    /// Readings on the real counters never go back and stay close to the host clock.
    #[test]
    fn follows_the_host_clock() {
        let clock = TscClock::new();
        let start = Instant::now();
        let mut last = Duration::ZERO;
        let mut reads = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            let before = Duration::from_nanos(clock.counters.host_nanos());
            let now = clock.now();
            let after = Duration::from_nanos(clock.counters.host_nanos());
            assert!(now >= last, "went back from {last:?} to {now:?}");
            // The rate is measured over milliseconds, so its error over one period is far
            // below this.
            let slack = Duration::from_micros(20);
            assert!(now + slack >= before, "{now:?} behind the host clock {before:?}");
            assert!(now <= after + slack, "{now:?} ahead of the host clock {after:?}");
            last = now;
            reads += 1;
        }
        assert!(reads > 1000);
        if clock.usable {
            assert_ne!(clock.mult.load(Ordering::Relaxed), 0, "no rate was measured in 60 ms");
        }
    }

    /// Threads reading one clock see one time: a reading taken after another thread's
    /// reading (ordered by a channel) is not earlier.
    #[test]
    fn readings_on_different_threads_are_ordered() {
        let clock = std::sync::Arc::new(TscClock::new());
        let (to_b, from_a) = std::sync::mpsc::sync_channel::<Duration>(0);
        let (to_a, from_b) = std::sync::mpsc::sync_channel::<Duration>(0);
        let other = std::sync::Arc::clone(&clock);
        let b = std::thread::spawn(move || {
            while let Ok(seen) = from_a.recv() {
                let now = other.now();
                assert!(now >= seen, "thread B read {now:?} after thread A's {seen:?}");
                if to_a.send(now).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(40) {
            to_b.send(clock.now()).unwrap();
            let seen = from_b.recv().unwrap();
            let now = clock.now();
            assert!(now >= seen, "thread A read {now:?} after thread B's {seen:?}");
        }
        drop(to_b);
        b.join().unwrap();
    }
}
