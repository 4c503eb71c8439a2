//! Reads NanoGuard's `model.pt`: a `torch.save` zip of
//! `{model_state_dict, config, metrics, version}`.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::Tensor;
use ragd_core::{ModelError, Result};

/// `nanoguard.model.ModelConfig`, less dropout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NanoGuardConfig {
    pub sequence_len: usize,
    pub vocab_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub n_embd: usize,
    pub num_classes: usize,
}

impl Default for NanoGuardConfig {
    /// The dataclass defaults, used for whatever the checkpoint leaves out.
    fn default() -> Self {
        Self {
            sequence_len: 512,
            vocab_size: 8192,
            n_layer: 4,
            n_head: 4,
            n_kv_head: 4,
            n_embd: 512,
            num_classes: 2,
        }
    }
}

/// The state dict (CPU tensors as stored) and the configuration.
pub struct Checkpoint {
    pub config: NanoGuardConfig,
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| ModelError::load(path.display(), e);
        let tensors =
            candle_core::pickle::read_all_with_key(path, Some("model_state_dict")).map_err(|e| fail(&e))?;
        let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
        let stored = read_config_entries(path).map_err(|e| fail(&e))?;
        let config = resolve_config(&stored, &tensors).map_err(|e| fail(&e))?;
        Ok(Self { config, tensors })
    }
}

/// The integer entries of the checkpoint's `config` dict (empty if none).
fn read_config_entries(path: &Path) -> Result<HashMap<String, i64>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    let name = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with("data.pkl"))
        .map(|n| n.into_owned())
        .ok_or("no data.pkl in the checkpoint")?;
    let entry = zip.by_name(&name).map_err(|e| e.to_string())?;
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut BufReader::new(entry))
        .map_err(|e| e.to_string())?;
    let Object::Dict(top) = stack.finalize().map_err(|e| e.to_string())? else {
        return Err("the checkpoint is not a dict".into());
    };
    let config = top
        .into_iter()
        .find(|(k, _)| *k == Object::Unicode("config".into()))
        .map(|(_, v)| v);
    let mut out = HashMap::new();
    if let Some(Object::Dict(entries)) = config {
        for (k, v) in entries {
            if let (Object::Unicode(k), Ok(v)) = (k, v.int_or_long()) {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// Takes sizes from the tensor shapes and the head counts from the stored
/// config (else the defaults), and checks that both agree.
fn resolve_config(
    stored: &HashMap<String, i64>,
    tensors: &HashMap<String, Tensor>,
) -> Result<NanoGuardConfig, String> {
    let dims = |name: &str| -> Result<Vec<usize>, String> {
        tensors
            .get(name)
            .map(|t| t.dims().to_vec())
            .ok_or_else(|| format!("tensor {name} is missing"))
    };
    let (vocab_size, n_embd) = match dims("transformer.wte.weight")?[..] {
        [v, e] => (v, e),
        ref d => return Err(format!("wte has shape {d:?}")),
    };
    let num_classes = match dims("cls_head.weight")?[..] {
        [c, e] if e == n_embd => c,
        ref d => return Err(format!("cls_head has shape {d:?}")),
    };
    let n_layer = (0..)
        .take_while(|i| tensors.contains_key(&format!("transformer.h.{i}.attn.c_q.weight")))
        .count();
    let defaults = NanoGuardConfig::default();
    let get = |key: &str, default: usize| -> Result<usize, String> {
        match stored.get(key) {
            None => Ok(default),
            Some(&v) => usize::try_from(v).map_err(|_| format!("config {key} = {v}")),
        }
    };
    let config = NanoGuardConfig {
        sequence_len: get("sequence_len", defaults.sequence_len)?,
        vocab_size,
        n_layer,
        n_head: get("n_head", defaults.n_head)?,
        n_kv_head: get("n_kv_head", defaults.n_kv_head)?,
        n_embd,
        num_classes,
    };
    for (key, inferred) in [
        ("vocab_size", vocab_size),
        ("n_embd", n_embd),
        ("n_layer", n_layer),
        ("num_classes", num_classes),
    ] {
        if let Some(&v) = stored.get(key) {
            if usize::try_from(v).ok() != Some(inferred) {
                return Err(format!("config {key} = {v} but the weights say {inferred}"));
            }
        }
    }
    let c = &config;
    if c.n_layer == 0 || c.n_head == 0 || c.num_classes == 0 || c.sequence_len == 0 {
        return Err(format!("degenerate config {c:?}"));
    }
    if c.n_kv_head != c.n_head {
        return Err(format!(
            "n_kv_head {} != n_head {} is not supported",
            c.n_kv_head, c.n_head
        ));
    }
    if !c.n_embd.is_multiple_of(c.n_head) || !(c.n_embd / c.n_head).is_multiple_of(2) {
        return Err(format!(
            "n_embd {} does not split into {} heads of even size",
            c.n_embd, c.n_head
        ));
    }
    Ok(config)
}
