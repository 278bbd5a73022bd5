//! The tenant export archive: a tar whose `manifest.json` lists every entry
//! with its length and CRC32, followed by `manifest.crc32` (the manifest's own
//! CRC32, hex). Import verifies the manifest and every entry before anything
//! is written.

use std::collections::HashMap;
use std::io::Read;

use corral_metering::Usage;
use corral_storage::{AppKind, ExportedBlob, ExportedBundle, TenantExport, TenantRecord};
use serde::{Deserialize, Serialize};

use super::PlatformError;

const FORMAT: &str = "corral-export";
const VERSION: u32 = 1;
/// Largest archive accepted for import, as a guard against decompression-style abuse.
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    tenant: TenantRecord,
    bundle: Option<BundleEntry>,
    kv: Vec<Entry>,
    usage: Vec<Usage>,
}

#[derive(Serialize, Deserialize)]
struct BundleEntry {
    kind: AppKind,
    code: Entry,
    static_files: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    path: String,
    len: u64,
    crc32: u32,
}

fn invalid(reason: impl Into<String>) -> PlatformError {
    PlatformError::InvalidArchive {
        reason: reason.into(),
    }
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> Result<(), PlatformError> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_cksum();
    b.append_data(&mut h, path, data)
        .map_err(|e| PlatformError::Internal(format!("writing archive entry {path}: {e}")))
}

/// Writes `ex` as an archive.
pub(crate) fn write(ex: &TenantExport) -> Result<Vec<u8>, PlatformError> {
    let mut b = tar::Builder::new(Vec::new());
    let mut n = 0usize;
    let mut put = |b: &mut tar::Builder<Vec<u8>>, blob: &ExportedBlob, dir: &str| {
        n += 1;
        let path = format!("{dir}/{n}");
        append(b, &path, &blob.bytes)?;
        Ok::<_, PlatformError>(Entry {
            key: blob.key.clone(),
            path,
            len: blob.bytes.len() as u64,
            crc32: blob.crc32,
        })
    };
    let bundle = match &ex.bundle {
        None => None,
        Some(bundle) => Some(BundleEntry {
            kind: bundle.kind,
            code: put(&mut b, &bundle.code, "bundle")?,
            static_files: bundle
                .static_files
                .iter()
                .map(|f| put(&mut b, f, "static"))
                .collect::<Result<_, _>>()?,
        }),
    };
    let kv = ex
        .kv
        .iter()
        .map(|f| put(&mut b, f, "kv"))
        .collect::<Result<_, _>>()?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        tenant: ex.tenant.clone(),
        bundle,
        kv,
        usage: ex.usage.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| PlatformError::Internal(format!("encoding manifest: {e}")))?;
    append(&mut b, "manifest.json", &json)?;
    append(
        &mut b,
        "manifest.crc32",
        format!("{:08x}", crc32fast::hash(&json)).as_bytes(),
    )?;
    b.into_inner()
        .map_err(|e| PlatformError::Internal(format!("finishing archive: {e}")))
}

/// Reads and verifies an archive; nothing is written here.
pub(crate) fn read(bytes: &[u8]) -> Result<TenantExport, PlatformError> {
    if bytes.len() as u64 > MAX_ARCHIVE_BYTES {
        return Err(invalid("archive is larger than 4 GiB"));
    }
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive
        .entries()
        .map_err(|e| invalid(format!("not a tar archive: {e}")))?
    {
        let mut entry = entry.map_err(|e| invalid(format!("corrupt tar entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| invalid(format!("bad entry path: {e}")))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| invalid(format!("{path}: {e}")))?;
        if files.insert(path.clone(), data).is_some() {
            return Err(invalid(format!("{path} appears twice")));
        }
    }
    let json = files
        .get("manifest.json")
        .ok_or_else(|| invalid("no manifest.json"))?;
    let want = files
        .get("manifest.crc32")
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| u32::from_str_radix(c.trim(), 16).ok())
        .ok_or_else(|| invalid("no readable manifest.crc32"))?;
    let got = crc32fast::hash(json);
    if got != want {
        return Err(invalid(format!(
            "manifest CRC32 is {got:08x}, expected {want:08x}"
        )));
    }
    let m: Manifest =
        serde_json::from_slice(json).map_err(|e| invalid(format!("manifest: {e}")))?;
    if m.format != FORMAT || m.version != VERSION {
        return Err(invalid(format!(
            "unsupported format {} v{}",
            m.format, m.version
        )));
    }
    let take = |e: &Entry| -> Result<ExportedBlob, PlatformError> {
        let data = files
            .get(&e.path)
            .ok_or_else(|| invalid(format!("{} is missing", e.path)))?;
        let crc = crc32fast::hash(data);
        if data.len() as u64 != e.len || crc != e.crc32 {
            return Err(invalid(format!(
                "{} ({}) fails its check: {} bytes crc32 {crc:08x}, expected {} bytes crc32 {:08x}",
                e.path,
                e.key,
                data.len(),
                e.len,
                e.crc32
            )));
        }
        Ok(ExportedBlob::new(e.key.clone(), data.clone()))
    };
    let bundle = match &m.bundle {
        None => None,
        Some(b) => Some(ExportedBundle::new(
            b.kind,
            take(&b.code)?,
            b.static_files.iter().map(take).collect::<Result<_, _>>()?,
        )),
    };
    let kv = m.kv.iter().map(take).collect::<Result<_, _>>()?;
    if m.usage.iter().any(|u| u.tenant != m.tenant.id) {
        return Err(invalid("a usage row names another tenant"));
    }
    Ok(TenantExport::new(m.tenant, bundle, kv, m.usage))
}
