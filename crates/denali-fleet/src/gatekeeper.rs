//! The gatekeeper: admits VMs strictly in arrival order while the memory budget allows.
//!
//! FIFO without overtaking: a small VM behind a large one that does not fit yet waits, so no
//! VM can be starved by a stream of smaller ones. A VM larger than the whole budget could never
//! be admitted; it is refused at once rather than blocking the queue forever.

use std::collections::VecDeque;

/// What the gatekeeper decided for a VM at the head of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted: the VM may boot; its memory is reserved until [`Gatekeeper::release`].
    Admit(usize),
    /// Refused: the VM needs more memory than the whole budget.
    Refuse(usize),
}

/// A FIFO queue of VMs (by index) waiting for memory.
#[derive(Debug)]
pub struct Gatekeeper {
    waiting: VecDeque<(usize, u64)>,
    budget: Option<u64>,
    used: u64,
}

impl Gatekeeper {
    /// A gatekeeper with `budget` bytes (`None`: unlimited) and nothing queued.
    pub fn new(budget: Option<u64>) -> Gatekeeper {
        Gatekeeper { waiting: VecDeque::new(), budget, used: 0 }
    }

    /// Queues VM `index`, which needs `mem` bytes.
    pub fn enqueue(&mut self, index: usize, mem: u64) {
        self.waiting.push_back((index, mem));
    }

    /// Takes every VM from the head of the queue that fits now, in order, stopping at the
    /// first that does not.
    pub fn admit(&mut self) -> Vec<Admission> {
        let mut decided = Vec::new();
        while let Some(&(index, mem)) = self.waiting.front() {
            match self.budget {
                Some(budget) if mem > budget => decided.push(Admission::Refuse(index)),
                Some(budget) if self.used.saturating_add(mem) > budget => break,
                _ => {
                    self.used = self.used.saturating_add(mem);
                    decided.push(Admission::Admit(index));
                }
            }
            self.waiting.pop_front();
        }
        decided
    }

    /// Returns `mem` bytes of an admitted VM that stopped.
    pub fn release(&mut self, mem: u64) {
        self.used = self.used.saturating_sub(mem);
    }

    /// Bytes reserved by admitted VMs.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// VMs still waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_in_order_and_never_overtakes() {
        let mut gate = Gatekeeper::new(Some(100));
        gate.enqueue(0, 60);
        gate.enqueue(1, 60);
        gate.enqueue(2, 10);
        assert_eq!(gate.admit(), vec![Admission::Admit(0)]);
        // VM 2 would fit but waits behind VM 1.
        assert_eq!(gate.admit(), vec![]);
        gate.release(60);
        assert_eq!(gate.admit(), vec![Admission::Admit(1), Admission::Admit(2)]);
        assert_eq!(gate.used(), 70);
    }

    #[test]
    fn refuses_what_can_never_fit() {
        let mut gate = Gatekeeper::new(Some(100));
        gate.enqueue(0, 101);
        gate.enqueue(1, 100);
        assert_eq!(gate.admit(), vec![Admission::Refuse(0), Admission::Admit(1)]);
        assert_eq!(gate.waiting(), 0);
    }
}
