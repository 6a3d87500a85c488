//! The timer device (`TIMER_ONESHOT`, `TIMER_PERIODIC`): one timer per VM, in microseconds of
//! the VM's clock.
//!
//! The timer only remembers its next expiry; the VM polls it at slice boundaries and while it
//! idles, so an armed timer costs nothing between polls. Periods missed while the VM was not
//! polled (a long slice, a slow host) collapse into one expiry, as several events of one source
//! set one interrupt bit anyway.

/// One VM's timer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// When the timer next expires, in microseconds since boot; `None` when disarmed.
    next_us: Option<u64>,
    /// The period of a periodic timer; 0 for a one-shot timer.
    period_us: u64,
}

impl Timer {
    /// `TIMER_ONESHOT`: expire once, `delay_us` after `now_us`; 0 disarms.
    pub fn one_shot(&mut self, now_us: u64, delay_us: u32) {
        self.period_us = 0;
        self.next_us = (delay_us != 0).then(|| now_us.saturating_add(u64::from(delay_us)));
    }

    /// `TIMER_PERIODIC`: expire every `period_us` from `now_us`; 0 stops.
    pub fn periodic(&mut self, now_us: u64, period_us: u32) {
        self.period_us = u64::from(period_us);
        self.next_us = (period_us != 0).then(|| now_us.saturating_add(u64::from(period_us)));
    }

    /// Whether the timer expired at or before `now_us`; re-arms a periodic timer for its next
    /// period after `now_us`.
    pub fn poll(&mut self, now_us: u64) -> bool {
        match self.next_us {
            Some(next) if next <= now_us => {
                self.next_us = match self.period_us {
                    0 => None,
                    period => {
                        let missed = (now_us - next) / period + 1;
                        Some(next.saturating_add(missed.saturating_mul(period)))
                    }
                };
                true
            }
            _ => false,
        }
    }

    /// When the timer next expires, if it is armed.
    pub fn next_expiry(&self) -> Option<u64> {
        self.next_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_fires_once() {
        let mut timer = Timer::default();
        timer.one_shot(100, 50);
        assert!(!timer.poll(149));
        assert!(timer.poll(150));
        assert!(!timer.poll(1000));
        assert_eq!(timer.next_expiry(), None);
    }

    #[test]
    fn periodic_fires_every_period_and_collapses_missed_ones() {
        let mut timer = Timer::default();
        timer.periodic(0, 10);
        assert!(timer.poll(10));
        assert_eq!(timer.next_expiry(), Some(20));
        assert!(timer.poll(55));
        assert_eq!(timer.next_expiry(), Some(60));
        timer.periodic(60, 0);
        assert!(!timer.poll(100));
    }

    #[test]
    fn setting_replaces_and_zero_cancels() {
        let mut timer = Timer::default();
        timer.periodic(0, 10);
        timer.one_shot(0, 0);
        assert_eq!(timer.next_expiry(), None);
        timer.one_shot(u64::MAX - 1, u32::MAX);
        assert_eq!(timer.next_expiry(), Some(u64::MAX));
    }
}
