//! The node the benchmark runs on: CPU model, cores and memory from
//! `/proc`, GPUs from `nvidia-smi` when it is on PATH (no CUDA build needed).

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeInfo {
    pub cpu_model: Option<String>,
    /// Logical CPUs in `/proc/cpuinfo`.
    pub logical_cpus: usize,
    /// Distinct (physical id, core id) pairs, when `/proc/cpuinfo` says.
    pub physical_cores: Option<usize>,
    /// CPUs this process may run on (affinity and cgroup quota).
    pub available_cpus: usize,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub gpus: Vec<GpuInfo>,
    /// Why no GPU is listed, when none is.
    pub gpu_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuInfo {
    pub name: String,
    pub memory_mib: Option<u64>,
    pub driver: String,
}

impl NodeInfo {
    /// This machine's figures.
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let (gpus, gpu_note) = match nvidia_smi() {
            Ok(gpus) if gpus.is_empty() => (gpus, Some("nvidia-smi lists no GPU".into())),
            Ok(gpus) => (gpus, None),
            Err(note) => (Vec::new(), Some(note)),
        };
        let mut info = Self::from_proc(&cpuinfo, &meminfo);
        info.available_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        info.gpus = gpus;
        info.gpu_note = gpu_note;
        info
    }

    /// CPU and memory figures from the text of `/proc/cpuinfo` and `/proc/meminfo`.
    fn from_proc(cpuinfo: &str, meminfo: &str) -> Self {
        let field = |line: &str, name: &str| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        };
        let mut cores = std::collections::HashSet::new();
        let (mut logical, mut cpu_model, mut physical_id) = (0, None, None);
        for line in cpuinfo.lines() {
            if field(line, "processor").is_some() {
                logical += 1;
            }
            cpu_model = cpu_model.or_else(|| field(line, "model name"));
            if let Some(p) = field(line, "physical id") {
                physical_id = Some(p);
            }
            if let Some(c) = field(line, "core id") {
                cores.insert((physical_id.clone(), c));
            }
        }
        let kib = |name: &str| {
            let v = meminfo.lines().find_map(|l| field(l, name))?;
            Some(v.trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024)
        };
        Self {
            cpu_model,
            logical_cpus: logical,
            physical_cores: (!cores.is_empty()).then_some(cores.len()),
            memory_total_bytes: kib("MemTotal"),
            memory_available_bytes: kib("MemAvailable"),
            ..Self::default()
        }
    }
}

/// The GPUs `nvidia-smi` lists, or why none could be asked for.
fn nvidia_smi() -> Result<Vec<GpuInfo>, String> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no nvidia-smi on PATH".to_string(),
            _ => format!("nvidia-smi not run: {e}"),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("nvidia-smi failed: {}", err.trim()));
    }
    Ok(parse_gpus(&String::from_utf8_lossy(&out.stdout)))
}

/// `name, memory MiB, driver` lines of `nvidia-smi --format=csv,noheader,nounits`.
fn parse_gpus(csv: &str) -> Vec<GpuInfo> {
    csv.lines()
        .filter_map(|line| {
            let mut parts = line.rsplitn(3, ',').map(str::trim);
            let (driver, memory, name) = (parts.next()?, parts.next()?, parts.next()?);
            Some(GpuInfo {
                name: name.to_string(),
                memory_mib: memory.parse().ok(),
                driver: driver.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpus_and_memory_from_proc_text() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 9654\nphysical id\t: 0\ncore id\t: 0\n\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 9654\nphysical id\t: 0\ncore id\t: 0\n\n\
                       processor\t: 2\nmodel name\t: AMD EPYC 9654\nphysical id\t: 0\ncore id\t: 1\n";
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  1 kB\nMemAvailable:   12288000 kB\n";
        let info = NodeInfo::from_proc(cpuinfo, meminfo);
        assert_eq!(info.cpu_model.as_deref(), Some("AMD EPYC 9654"));
        assert_eq!((info.logical_cpus, info.physical_cores), (3, Some(2)));
        assert_eq!(info.memory_total_bytes, Some(24_576_000 * 1024));
        assert_eq!(info.memory_available_bytes, Some(12_288_000 * 1024));
    }

    #[test]
    fn parses_nvidia_smi_lines() {
        let gpus = parse_gpus("NVIDIA H200, 143771, 570.124.06\nNVIDIA A100-SXM4-80GB, [N/A], 535.1\n");
        assert_eq!(
            gpus[0],
            GpuInfo {
                name: "NVIDIA H200".into(),
                memory_mib: Some(143771),
                driver: "570.124.06".into()
            }
        );
        assert_eq!((gpus[1].memory_mib, gpus.len()), (None, 2));
    }

    #[test]
    fn this_machine_has_cpus() {
        let info = NodeInfo::probe();
        assert!(info.logical_cpus > 0 && info.available_cpus > 0);
        assert!(info.memory_total_bytes.unwrap_or(0) > 0);
    }
}
