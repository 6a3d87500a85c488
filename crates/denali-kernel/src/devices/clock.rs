//! The time source of a VM's devices and the doorbell that ends an idle early.
//!
//! A VM never reads the host clock directly: it asks its [`Clock`], so tests can drive time by
//! hand ([`FakeClock`]) and a scheduler running many VMs can give them one shared clock. Idle
//! waits through [`Clock::wait`], which returns at a deadline or when the VM's [`Doorbell`]
//! rings (a keyboard byte or a frame arrived from another thread).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// A monotonic time source.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary origin fixed when the clock was created.
    fn now(&self) -> Duration;
    /// Blocks until `deadline` (on this clock; `None`: no deadline) or until `bell` rings,
    /// whichever comes first. May return early; callers re-check what they wait for.
    fn wait(&self, deadline: Option<Duration>, bell: &Doorbell);
}

/// The host's monotonic clock.
#[derive(Debug)]
pub struct HostClock {
    origin: Instant,
}

impl HostClock {
    pub fn new() -> HostClock {
        HostClock { origin: Instant::now() }
    }
}

impl Default for HostClock {
    fn default() -> HostClock {
        HostClock::new()
    }
}

impl Clock for HostClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn wait(&self, deadline: Option<Duration>, bell: &Doorbell) {
        match deadline {
            Some(deadline) => bell.wait_timeout(deadline.saturating_sub(self.now())),
            None => bell.wait(),
        }
    }
}

/// A clock that moves only when told to, or when a VM waits on it (a wait with a deadline
/// jumps straight to it), so tests of timers and idle neither sleep nor race.
#[derive(Debug, Default)]
pub struct FakeClock {
    micros: AtomicU64,
}

impl FakeClock {
    pub fn new() -> FakeClock {
        FakeClock::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::SeqCst))
    }

    fn wait(&self, deadline: Option<Duration>, bell: &Doorbell) {
        if bell.take() {
            return;
        }
        match deadline {
            Some(deadline) => {
                let micros = u64::try_from(deadline.as_micros()).unwrap_or(u64::MAX);
                self.micros.fetch_max(micros, Ordering::SeqCst);
            }
            // Only another thread can end this wait; the clock cannot jump to "never".
            None => bell.wait(),
        }
    }
}

/// A wake-up flag with a condition variable: devices fed from other threads ring it so an
/// idle VM notices them at once instead of at its next deadline. Cloning shares the bell.
/// A scheduler that does not block on the bell (it runs many VMs per thread) registers a
/// [`Waker`] instead, called on every ring.
#[derive(Clone, Default)]
pub struct Doorbell {
    inner: Arc<(Mutex<bool>, Condvar, OnceLock<Waker>)>,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell").field("has_waker", &self.inner.2.get().is_some()).finish_non_exhaustive()
    }
}

/// Called when a doorbell rings, on the ringing thread, possibly while the ringer holds a
/// lock (the switch's): it must be quick and must not ring bells or take the switch's lock.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

impl Doorbell {
    pub fn new() -> Doorbell {
        Doorbell::default()
    }

    /// Wakes the waiter (now, or at its next wait if none is waiting), and calls the waker.
    pub fn ring(&self) {
        let (flag, condvar, waker) = &*self.inner;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        condvar.notify_all();
        if let Some(waker) = waker.get() {
            waker();
        }
    }

    /// Registers `waker`, called on every later ring. A bell has at most one waker: returns
    /// false (and keeps the first) if one is already set.
    pub fn set_waker(&self, waker: Waker) -> bool {
        self.inner.2.set(waker).is_ok()
    }

    /// Whether the bell rang since the last wait or take; clears it.
    pub fn take(&self) -> bool {
        std::mem::take(&mut *self.inner.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn wait_timeout(&self, timeout: Duration) {
        let (flag, condvar, _) = &*self.inner;
        let guard = flag.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut guard, _) =
            condvar.wait_timeout_while(guard, timeout, |rung| !*rung).unwrap_or_else(PoisonError::into_inner);
        *guard = false;
    }

    fn wait(&self) {
        let (flag, condvar, _) = &*self.inner;
        let guard = flag.lock().unwrap_or_else(PoisonError::into_inner);
        let mut guard = condvar.wait_while(guard, |rung| !*rung).unwrap_or_else(PoisonError::into_inner);
        *guard = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_jumps_to_the_deadline() {
        let clock = FakeClock::new();
        clock.wait(Some(Duration::from_millis(5)), &Doorbell::new());
        assert_eq!(clock.now(), Duration::from_millis(5));
        clock.advance(Duration::from_micros(1));
        assert_eq!(clock.now(), Duration::from_micros(5001));
    }

    #[test]
    fn a_rung_bell_ends_the_wait_at_once() {
        let clock = HostClock::new();
        let bell = Doorbell::new();
        let other = bell.clone();
        std::thread::spawn(move || other.ring());
        clock.wait(None, &bell);
        assert!(!bell.take());
    }
}
