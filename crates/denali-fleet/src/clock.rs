//! The fleet's clock: the host's monotonic clock, read once per VM switch.
//!
//! Reading the host clock is a large part of switching VMs (about 80 ns on a virtual machine).
//! The scheduler reads it when it picks a VM and hands that reading to the VM's first clock
//! read of the quantum (the device poll and `TIME_US` at the start of its first slice), which
//! would otherwise read the clock again a few hundred nanoseconds later. Every other read is
//! the host clock's. A VM never sees time go back: the reading was taken after its previous
//! quantum had been filed, so after every reading of that quantum.

use std::cell::Cell;
use std::time::Duration;

use denali_kernel::{Clock, Doorbell, HostClock};

thread_local! {
    /// A reading the scheduler took for the VM it is about to run on this thread.
    static HANDED: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// The clock of every VM of a fleet.
#[derive(Debug)]
pub(crate) struct FleetClock {
    host: HostClock,
}

impl FleetClock {
    pub fn new() -> FleetClock {
        FleetClock { host: HostClock::new() }
    }

    /// The time now, without handing it to anyone.
    pub fn read(&self) -> Duration {
        self.host.now()
    }

    /// Hands `now` (a reading just taken) to the next `now()` on this thread, for the quantum
    /// about to run; `None` withdraws a reading the quantum did not use.
    pub fn hand(&self, now: Option<Duration>) {
        HANDED.set(now);
    }
}

impl Clock for FleetClock {
    fn now(&self) -> Duration {
        HANDED.take().unwrap_or_else(|| self.host.now())
    }

    fn wait(&self, deadline: Option<Duration>, bell: &Doorbell) {
        self.host.wait(deadline, bell);
    }
}
