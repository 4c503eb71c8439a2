//! Which device the models run on.

use candle_core::{DType, Device, DeviceLocation};
use ragd_core::ModelError;

/// The device asked for on the command line: `cpu`, `cuda[:N]`, `metal`, or
/// `auto` (the first accelerator compiled in and present, else the CPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "metal" => Ok(Self::Metal),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device {s:?}: use auto, cpu, cuda, cuda:N or metal")),
        }
    }
}

impl DeviceChoice {
    pub fn open(&self) -> Result<Device, ModelError> {
        let fail = |e: candle_core::Error| ModelError::load(format!("{self:?}"), e);
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => Device::new_cuda(*n).map_err(fail),
            Self::Metal => Device::new_metal(0).map_err(fail),
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    Device::new_cuda(0).map_err(fail)
                } else if candle_core::utils::metal_is_available() {
                    Device::new_metal(0).map_err(fail)
                } else {
                    Ok(Device::Cpu)
                }
            }
        }
    }
}

/// Whether a CUDA device can be opened: built with the `cuda` feature and a
/// GPU with its driver present. Device tests skip themselves without one.
pub fn cuda_available() -> bool {
    candle_core::utils::cuda_is_available() && Device::new_cuda(0).is_ok()
}

/// `cpu`, `cuda:N` or `metal:N`.
pub fn device_label(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".to_string(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The one log line of a loaded model: which device, dtype and code path
/// (`backend`) it runs on, so a `--device cuda` run shows that the GPU path
/// was really taken.
pub(crate) fn log_model_loaded(id: &str, device: &Device, dtype: DType, backend: &str) {
    tracing::info!(
        model = id,
        device = %device_label(device),
        dtype = dtype.as_str(),
        backend,
        "model loaded"
    );
}
