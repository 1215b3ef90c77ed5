//! Checks made before any probe is loaded.

use std::path::Path;

use crate::error::Error;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability set of the calling thread (capget: capabilities
/// belong to threads, and /proc/self/status shows the main thread's,
/// which the TUI drops while its collector thread keeps what it needs).
fn effective_caps() -> u64 {
    rustix::thread::capabilities(None).map_or(0, |c| c.effective.bits())
}

/// Names of the capabilities ipcwatch needs and does not have. Empty when
/// it may load and attach its probes.
pub fn missing_capabilities() -> Vec<&'static str> {
    let caps = effective_caps();
    let has = |bit: u32| caps & (1 << bit) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

pub fn check_privileges() -> Result<(), Error> {
    let missing = missing_capabilities();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let who = if euid == 0 {
        "running as root but without".to_string()
    } else {
        format!("running as uid {euid}, without")
    };
    Err(Error::Privileges(format!(
        "ipcwatch needs root or the capabilities CAP_BPF and CAP_PERFMON to load its eBPF probes; \
         it is {who} {}. Run it with sudo, or grant them: \
         sudo setcap cap_bpf,cap_perfmon+ep $(command -v ipcwatch)",
        missing.join(" and ")
    )))
}

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Make sure tracefs is mounted (tracepoints are found through it).
/// Returns a note when it had to mount it.
pub fn ensure_tracefs() -> Result<Option<String>, Error> {
    if Path::new(TRACEFS).join("events").is_dir()
        || Path::new("/sys/kernel/debug/tracing/events").is_dir()
    {
        return Ok(None);
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, dst, fs) = (c("tracefs"), c(TRACEFS), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Tracefs(format!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed ({e}); \
             mount it with: sudo mount -t tracefs tracefs {TRACEFS}"
        )));
    }
    Ok(Some(format!("mounted tracefs at {TRACEFS}")))
}

/// Lift RLIMIT_MEMLOCK for kernels that still charge BPF memory to it
/// (before 5.11). A refusal is only a note: newer kernels charge the cgroup.
pub fn raise_memlock() -> Option<String> {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to a local rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        return Some(format!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on Linux 5.11+, which charges BPF memory to the cgroup",
            std::io::Error::last_os_error()
        ));
    }
    None
}
