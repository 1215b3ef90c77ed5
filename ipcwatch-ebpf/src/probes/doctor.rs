//! Minimal programs that `ipcwatch doctor` loads and attaches to find out,
//! by really trying, which program types this kernel supports. They do
//! nothing when they run.

use aya_ebpf::{
    macros::{
        btf_tracepoint, fentry, fexit, kprobe, kretprobe, perf_event, raw_tracepoint, tracepoint,
        uprobe,
    },
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, PerfEventContext, ProbeContext,
        RawTracePointContext, RetProbeContext, TracePointContext,
    },
};

#[tracepoint]
pub fn doctor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn doctor_raw_tracepoint(_ctx: RawTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn doctor_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[uprobe]
pub fn doctor_uprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[kprobe]
pub fn doctor_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[fentry(function = "do_sys_openat2")]
pub fn doctor_fentry(_ctx: FEntryContext) -> u32 {
    0
}

// The two below are loaded only by `ipcwatch-workload empty-hooks`, to
// weigh a per-function hook against the syscall tracepoints
// (`cargo xtask kernels --hook-cost`).

#[fexit(function = "do_sys_openat2")]
pub fn doctor_fexit(_ctx: FExitContext) -> u32 {
    0
}

#[kretprobe]
pub fn doctor_kretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

#[perf_event]
pub fn doctor_perf_event(_ctx: PerfEventContext) -> u32 {
    0
}
