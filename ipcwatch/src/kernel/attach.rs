//! Attaching programs one at a time: a probe that cannot be attached is
//! skipped, with the reason, and tracing goes on without it.

use aya::Ebpf;
use aya::programs::{BtfTracePoint, Program, ProgramError, RawTracePoint, TracePoint};

/// A probe that could not be attached: tracing goes on without it.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub probe: String,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "probe {} not attached: {}", self.probe, self.reason)
    }
}

/// The program `name` of the object, as its type `T`.
pub fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: ProgramError| e.to_string())
}

/// Run `attach`; a failure is recorded as a skipped probe: tracing goes on
/// without it.
pub fn attach_or_skip(
    skipped: &mut Vec<Skipped>,
    probe: String,
    attach: impl FnOnce() -> Result<(), String>,
) -> bool {
    match attach() {
        Ok(()) => true,
        Err(reason) => {
            skipped.push(Skipped { probe, reason });
            false
        }
    }
}

/// How many of the verifier's last lines a refusal shows.
const VERIFIER_LINES: usize = 3;

/// Why program `prog` did not load, in one line: the kernel's error and,
/// when the verifier refused it, its reason and figures (see
/// [`verifier_tail`]), never the whole log (thousands of lines on a
/// complex program). With `IPCWATCH_VERIFIER_LOG=FILE` the whole log is
/// appended to FILE.
pub fn load_error(prog: &str, e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if let Some(path) = std::env::var_os("IPCWATCH_VERIFIER_LOG") {
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| {
                        use std::io::Write as _;
                        writeln!(f, "==== {prog}: {io_error}\n{log}")
                    });
            }
            refusal(prog, io_error, &log)
        }
        other => format!("{prog}: {other}"),
    }
}

/// [`load_error`] from its parts.
pub fn refusal(prog: &str, io_error: &std::io::Error, log: &str) -> String {
    let last = verifier_tail(log, VERIFIER_LINES);
    if last.is_empty() {
        format!("the kernel refused {prog} ({io_error}; no verifier output)")
    } else {
        format!("the kernel refused {prog} ({io_error}); verifier: {last}")
    }
}

/// The statistics the verifier prints last (`log_level` 4).
fn is_stats(line: &str) -> bool {
    line.starts_with("verification time ")
        || line.starts_with("stack depth ")
        || line.starts_with("processed ")
}

/// A verifier log in one line: its last `n` lines before the statistics
/// (the instruction refused and why), then its `processed N insns` line;
/// joined with " | ", each line cut at 200 characters.
pub fn verifier_tail(log: &str, n: usize) -> String {
    let cut = |l: &str| match l.char_indices().nth(200) {
        Some((at, _)) => format!("{}...", &l[..at]),
        None => l.to_string(),
    };
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut last: Vec<String> = lines
        .iter()
        .rev()
        .filter(|l| !is_stats(l))
        .take(n)
        .map(|l| cut(l))
        .collect();
    last.reverse();
    if let Some(p) = lines.iter().rev().find(|l| l.starts_with("processed ")) {
        last.push(cut(p));
    }
    last.join(" | ")
}

pub fn attach_raw(ebpf: &mut Ebpf, prog: &str, tp: &str, skipped: &mut Vec<Skipped>) {
    attach_or_skip(skipped, format!("raw_tp:{tp}"), || {
        let program: &mut RawTracePoint = program(ebpf, prog)?;
        program.load().map_err(|e| load_error(prog, &e))?;
        program.attach(tp).map_err(|e| e.to_string())?;
        Ok(())
    });
}

/// Which form of a syscall program is loaded, and what the verifier
/// spent on it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The program's name in the object (`prog` or `prog`_btf).
    pub program: String,
    /// On tp_btf (else on the raw tracepoint).
    pub btf: bool,
    /// Instructions the verifier processed (Linux 5.16+).
    pub insns: Option<u32>,
    /// Wall time of the load (verification included).
    pub secs: f64,
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} loaded", self.program)?;
        match self.insns {
            Some(n) => write!(f, " ({n} insns verified in {:.1} s)", self.secs),
            None => write!(f, " (verified in {:.1} s)", self.secs),
        }
    }
}

fn timed<T>(load: impl FnOnce() -> Result<T, String>) -> Result<f64, String> {
    let t = std::time::Instant::now();
    load()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Load program `prog`_btf for tp_btf `tp`, which loads through typed
/// pointers (fewer helper calls); when the kernel refuses it, or with the
/// environment variable IPCWATCH_NO_TP_BTF, `prog` for the raw
/// tracepoint. Why tp_btf was not used goes to `skipped`.
pub fn load_btf_or_raw(
    ebpf: &mut Ebpf,
    prog: &str,
    tp: &str,
    skipped: &mut Vec<Skipped>,
) -> Result<Loaded, String> {
    let btf_prog = format!("{prog}_btf");
    let btf = (|| {
        if std::env::var_os("IPCWATCH_NO_TP_BTF").is_some() {
            return Err("IPCWATCH_NO_TP_BTF is set: using the raw tracepoint".to_string());
        }
        let btf = aya::Btf::from_sys_fs().map_err(|e| e.to_string())?;
        let program: &mut BtfTracePoint = program(ebpf, &btf_prog)?;
        let secs = timed(|| {
            program
                .load(tp, &btf)
                .map_err(|e| load_error(&btf_prog, &e))
        })?;
        Ok(Loaded {
            insns: verified(program.info()),
            program: btf_prog.clone(),
            btf: true,
            secs,
        })
    })();
    match btf {
        Ok(l) => return Ok(l),
        Err(reason) => skipped.push(Skipped {
            probe: format!("tp_btf:{tp}"),
            reason: format!("{reason} (the raw tracepoint is used)"),
        }),
    }
    let program: &mut RawTracePoint = program(ebpf, prog)?;
    let secs = timed(|| program.load().map_err(|e| load_error(prog, &e)))?;
    Ok(Loaded {
        insns: verified(program.info()),
        program: prog.to_string(),
        btf: false,
        secs,
    })
}

fn verified(info: Result<aya::programs::ProgramInfo, ProgramError>) -> Option<u32> {
    info.ok()?.verified_instruction_count()
}

/// Attach what [`load_btf_or_raw`] loaded to `tp`.
pub fn attach_loaded(ebpf: &mut Ebpf, loaded: &Loaded, tp: &str) -> Result<(), String> {
    if loaded.btf {
        let program: &mut BtfTracePoint = program(ebpf, &loaded.program)?;
        program.attach().map_err(|e| e.to_string())?;
    } else {
        let program: &mut RawTracePoint = program(ebpf, &loaded.program)?;
        program.attach(tp).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// [`load_btf_or_raw`] and [`attach_loaded`]; a failure is a skipped
/// probe.
pub fn attach_btf_or_raw(ebpf: &mut Ebpf, prog: &str, tp: &str, skipped: &mut Vec<Skipped>) {
    let r = (|| {
        let l = load_btf_or_raw(ebpf, prog, tp, skipped)?;
        match attach_loaded(ebpf, &l, tp) {
            Err(reason) if l.btf => {
                skipped.push(Skipped {
                    probe: format!("tp_btf:{tp}"),
                    reason: format!("{reason} (the raw tracepoint is used)"),
                });
                let raw: &mut RawTracePoint = program(ebpf, prog)?;
                raw.load().map_err(|e| load_error(prog, &e))?;
                raw.attach(tp).map_err(|e| e.to_string())?;
                Ok(())
            }
            r => r,
        }
    })();
    if let Err(reason) = r {
        skipped.push(Skipped {
            probe: format!("raw_tp:{tp}"),
            reason,
        });
    }
}

pub fn attach_tp(ebpf: &mut Ebpf, prog: &str, cat: &str, tp: &str, skipped: &mut Vec<Skipped>) {
    attach_or_skip(skipped, format!("{cat}:{tp}"), || {
        let program: &mut TracePoint = program(ebpf, prog)?;
        program.load().map_err(|e| load_error(prog, &e))?;
        program.attach(cat, tp).map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of the log Debian 12's 6.1 verifier gave for the sys_exit
    /// program that was one program for every family (thousands of lines
    /// before these).
    const TOO_LARGE: &str = "\
; if self.ok && d.is_multiple_of(size) && i < W { @ block.rs:56
4161: (bf) r2 = r1                    ; R1_w=scalar(id=2070) R2_w=scalar(id=2070)
4162: (57) r2 &= 7                    ; R2_w=scalar(umax=7,var_off=(0x0; 0x7))
BPF program is too large. Processed 1000001 insn
verification time 93957713 usec
stack depth 408+0+416+0+0+8+112+0+0+168+272+256+80+80+456+112+128+264+72
processed 1000001 insns (limit 1000000) max_states_per_insn 47 total_states 29724 peak_states 5788 mark_read 76

";

    #[test]
    fn a_refusal_is_one_line_with_the_reason_and_the_count() {
        let e = std::io::Error::from_raw_os_error(libc::E2BIG);
        let msg = refusal("ipcwatch_sys_exit", &e, TOO_LARGE);
        assert_eq!(
            msg,
            "the kernel refused ipcwatch_sys_exit (Argument list too long (os error 7)); \
             verifier: 4161: (bf) r2 = r1                    ; R1_w=scalar(id=2070) R2_w=scalar(id=2070) \
             | 4162: (57) r2 &= 7                    ; R2_w=scalar(umax=7,var_off=(0x0; 0x7)) \
             | BPF program is too large. Processed 1000001 insn \
             | processed 1000001 insns (limit 1000000) max_states_per_insn 47 total_states 29724 peak_states 5788 mark_read 76"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn a_refusal_without_a_log_says_so() {
        let e = std::io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(
            refusal("doctor_fentry", &e, ""),
            "the kernel refused doctor_fentry (Operation not permitted (os error 1); no verifier output)"
        );
    }

    #[test]
    fn long_verifier_lines_are_cut_and_only_the_last_ones_kept() {
        let long = "x".repeat(500);
        let log: String = (0..5000)
            .map(|i| format!("{i}: (07) r1 += 8\n"))
            .chain([format!("{long}\n"), "invalid mem access 'scalar'\n".into()])
            .collect();
        let tail = verifier_tail(&log, 3);
        assert_eq!(
            tail,
            format!(
                "4999: (07) r1 += 8 | {}... | invalid mem access 'scalar'",
                &long[..200]
            )
        );
    }
}
