//! Merging the bounds and code-page checks of a block's accesses (safe code: a plan only).
//!
//! Accesses whose addresses differ by constants known at translation time share one check:
//! the same base and index registers, neither written in between except by a known constant
//! (PUSH, POP, CALL, `add`/`sub`/`inc`/`dec`/`lea` of the base by an immediate). The check is
//! made once, before the first of them, over the hull of their ranges: if the hull lies inside
//! memory (and, when one of them stores, its pages hold no cached code), so does every access.
//! A hull check that fails exits before the first access, with the state before that
//! instruction, and the interpreter runs it: exiting early is always exact, so merging never
//! changes what the guest sees, only how often the checks run.
//!
//! A hull spans at most one page (plus the partial page its end reaches), so checking the
//! code-page bytes of its first and last byte covers every page it touches.

/// Guest register number of ESP (encoding order).
pub(super) const ESP: usize = 4;
/// Largest hull, in bytes: the code-page check looks at its first and last byte only.
const MAX_SPAN: i64 = 4096;
/// Largest offset from a register's value at the start of its run of constant updates that a
/// hull may reach; keeps every displacement well inside an i32.
const MAX_OFFSET: i64 = 1 << 24;

/// One guest memory access of an instruction: `base + index * scale + disp`, `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Access {
    pub base: Option<usize>,
    pub index: Option<usize>,
    pub scale: u32,
    pub disp: i32,
    pub size: u32,
    pub write: bool,
}

/// What an instruction does to the registers addresses are built from.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Effect {
    /// Guest registers it writes (bit per register number).
    pub writes: u8,
    /// A register it changes by a constant (and writes in no other way).
    pub adjust: Option<(usize, i32)>,
    /// A side exit (a JCC inside a block): accesses after it may never run, so none of them
    /// is checked before it.
    pub barrier: bool,
}

/// One merged check, made before an instruction: the address is
/// `base + index * scale + disp` (32-bit wrap, as the guest computes it) and the check covers
/// `span` bytes from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Check {
    pub base: Option<usize>,
    pub index: Option<usize>,
    pub scale: u32,
    pub disp: i32,
    pub span: u32,
    /// Whether an access of the hull stores (the code-page check is needed).
    pub write: bool,
}

/// Which registers an address depends on and in which version (a non-constant write makes a
/// new version): accesses with equal keys differ by constants.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    base: Option<(usize, u32)>,
    index: Option<(usize, u32)>,
    scale: u32,
}

struct Hull {
    /// The instruction the check goes before, and the base's offset at that point.
    first: usize,
    base_at_first: i64,
    /// Offsets from the base's value at the start of its version.
    low: i64,
    high: i64,
    write: bool,
    access: Access,
}

/// The checks to make before each instruction, given each one's accesses and register effects.
pub(super) fn plan<A, I>(instructions: I) -> Vec<Vec<Check>>
where
    A: IntoIterator<Item = Access>,
    I: ExactSizeIterator<Item = (A, Effect)>,
{
    let n = instructions.len();
    let mut version = [0u32; 8];
    // Constant added to each register since the start of its version.
    let mut offset = [0i64; 8];
    let mut hulls: Vec<Hull> = Vec::new();
    // The open hull of each key (few: a linear search beats hashing them).
    let mut open: Vec<(Key, usize)> = Vec::new();
    for (i, (list, effect)) in instructions.enumerate() {
        for a in list {
            let key =
                Key { base: a.base.map(|r| (r, version[r])), index: a.index.map(|r| (r, version[r])), scale: a.scale };
            let base_offset = a.base.map_or(0, |r| offset[r]);
            let low = base_offset + i64::from(a.disp);
            let high = low + i64::from(a.size);
            let merged = open.iter().find(|(k, _)| *k == key).is_some_and(|&(_, h)| {
                let hull = &mut hulls[h];
                let (l, hi) = (hull.low.min(low), hull.high.max(high));
                let fits = hi - l <= MAX_SPAN && l.abs() < MAX_OFFSET && hi.abs() < MAX_OFFSET;
                if fits {
                    hull.low = l;
                    hull.high = hi;
                    hull.write |= a.write;
                }
                fits
            });
            if !merged {
                match open.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = hulls.len(),
                    None => open.push((key, hulls.len())),
                }
                hulls.push(Hull { first: i, base_at_first: base_offset, low, high, write: a.write, access: a });
            }
        }
        if effect.barrier {
            open.clear();
        }
        let mut clobbered = effect.writes;
        if let Some((r, d)) = effect.adjust {
            offset[r] += i64::from(d);
            clobbered &= !(1 << r);
            if offset[r].abs() >= MAX_OFFSET {
                clobbered |= 1 << r;
            }
        }
        for r in 0..8 {
            if clobbered & (1 << r) != 0 {
                version[r] += 1;
                offset[r] = 0;
            }
        }
    }
    let mut plan = vec![Vec::new(); n];
    for h in hulls {
        #[allow(clippy::cast_possible_truncation, reason = "both below MAX_OFFSET / MAX_SPAN")]
        let (disp, span) = ((h.low - h.base_at_first) as i32, (h.high - h.low) as u32);
        plan[h.first].push(Check {
            base: h.access.base,
            index: h.access.index,
            scale: h.access.scale,
            disp,
            span,
            write: h.write,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(disp: i32, write: bool) -> Access {
        Access { base: Some(ESP), index: None, scale: 1, disp, size: 4, write }
    }

    fn push() -> (Vec<Access>, Effect) {
        (vec![stack(-4, true)], Effect { writes: 1 << ESP, adjust: Some((ESP, -4)), barrier: false })
    }

    #[test]
    fn pushes_share_one_check_over_their_hull() {
        let (a, e): (Vec<_>, Vec<_>) = [push(), push(), push()].into_iter().unzip();
        let plan = plan(a.into_iter().zip(e));
        assert_eq!(plan[0], vec![Check { base: Some(ESP), index: None, scale: 1, disp: -12, span: 12, write: true }]);
        assert!(plan[1].is_empty() && plan[2].is_empty());
    }

    #[test]
    fn a_register_written_by_a_non_constant_starts_a_new_check() {
        let ebx = |disp| Access { base: Some(3), index: None, scale: 1, disp, size: 4, write: false };
        let a = vec![vec![ebx(0)], vec![], vec![ebx(4)], vec![], vec![ebx(8)]];
        let e = vec![
            Effect::default(),
            Effect { writes: 1 << 3, adjust: Some((3, 4)), barrier: false },
            Effect::default(),
            Effect { writes: 1 << 3, adjust: None, barrier: false },
            Effect::default(),
        ];
        let plan = plan(a.into_iter().zip(e));
        // [ebx] and, after ebx += 4, [ebx+4] (offset 8 from the start): one hull of 12 bytes.
        assert_eq!(plan[0], vec![Check { base: Some(3), index: None, scale: 1, disp: 0, span: 12, write: false }]);
        assert!(plan[2].is_empty());
        // After an unknown write, [ebx+8] is checked on its own.
        assert_eq!(plan[4], vec![Check { base: Some(3), index: None, scale: 1, disp: 8, span: 4, write: false }]);
    }

    #[test]
    fn hulls_never_span_more_than_a_page() {
        let far = |disp| vec![Access { base: Some(3), index: None, scale: 1, disp, size: 4, write: true }];
        let plan = plan([far(0), far(4092), far(4093)].into_iter().zip([Effect::default(); 3]));
        assert_eq!(plan[0][0].span, 4096);
        assert_eq!(plan[2].len(), 1);
    }

    #[test]
    fn a_check_before_later_adjustments_uses_the_offset_at_that_point() {
        // sub esp, 12 ; mov [esp+4], eax ; push ebx: hull [esp-16, esp-4) after the sub.
        let a = vec![vec![], vec![stack(4, true)], vec![stack(-4, true)]];
        let e = vec![
            Effect { writes: 1 << ESP, adjust: Some((ESP, -12)), barrier: false },
            Effect::default(),
            Effect { writes: 1 << ESP, adjust: Some((ESP, -4)), barrier: false },
        ];
        let plan = plan(a.into_iter().zip(e));
        assert_eq!(plan[1], vec![Check { base: Some(ESP), index: None, scale: 1, disp: -4, span: 12, write: true }]);
    }
}
