//! The fleet's clock: read once per VM switch, from the TSC where the kernel keeps time with
//! it ([`TscClock`]), else from the host's monotonic clock.
//!
//! Reading the clock is a large part of switching VMs. The scheduler reads it when it picks a
//! VM and hands that reading to the VM's first clock read of the quantum (the device poll and
//! `TIME_US` at the start of its first slice), which would otherwise read the clock again a few
//! hundred nanoseconds later. Every other read reads the clock. A VM never sees time go back:
//! the reading was taken after its previous quantum had been filed, so after every reading of
//! that quantum (and the VM keeps its `TIME_US` from going back in any case).

use std::cell::Cell;
use std::time::Duration;

use denali_kernel::{Clock, Doorbell, HostClock};

use crate::tsc::TscClock;

thread_local! {
    /// A reading the scheduler took for the VM it is about to run on this thread.
    static HANDED: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// The clock of every VM of a fleet.
#[derive(Debug)]
pub(crate) struct FleetClock {
    source: TscClock,
    /// Sleeps for [`Clock::wait`].
    host: HostClock,
}

impl FleetClock {
    pub fn new() -> FleetClock {
        FleetClock { source: TscClock::new(), host: HostClock::new() }
    }

    /// The time now, without handing it to anyone.
    pub fn read(&self) -> Duration {
        self.source.now()
    }

    /// Hands `now` (a reading just taken) to the next `now()` on this thread, for the quantum
    /// about to run; `None` withdraws a reading the quantum did not use.
    pub fn hand(&self, now: Option<Duration>) {
        HANDED.set(now);
    }
}

impl Clock for FleetClock {
    fn now(&self) -> Duration {
        HANDED.take().unwrap_or_else(|| self.source.now())
    }

    fn wait(&self, deadline: Option<Duration>, bell: &Doorbell) {
        // The deadline is on this clock; the host clock sleeps the time left until it.
        let left = deadline.map(|deadline| deadline.saturating_sub(self.source.now()));
        self.host.wait(left.map(|left| self.host.now() + left), bell);
    }
}
