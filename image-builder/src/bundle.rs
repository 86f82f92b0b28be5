//! `image-builder bundle`: an image's three files in one `P-V.swu`, laid
//! out by [`formats::bundle`] (its one home). The payload is copied as a
//! stream and hashed on the way, so a payload that does not match its
//! manifest never makes it into a bundle.

use crate::error::{BuildError, IoContext};
use crate::payload::HashWriter;
use formats::bundle;
use formats::manifest::{self, Manifest};
use formats::store::AtomicFile;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub struct BundleRequest {
    /// The image's manifest, `DIR/P-V.manifest`; the signature and the
    /// payload are beside it.
    pub manifest: PathBuf,
    pub out_dir: PathBuf,
    /// Hardware revisions for the `sw-description` (gooseBit's
    /// `hw_revision`s of board `<product>`).
    pub hardware: Vec<String>,
}

pub struct BundleSummary {
    pub path: PathBuf,
    pub size: u64,
    pub manifest: Manifest,
}

/// The bundle's file name for a product and version: `P-V.swu`.
pub fn file_name(product: &str, version: &str) -> String {
    format!(
        "{}.{}",
        Manifest::file_stem(product, version),
        bundle::EXTENSION
    )
}

/// Reads a small file whole, refusing one larger than `max`.
fn read_small(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, BuildError> {
    let mut data = Vec::new();
    File::open(path)
        .ctx(path, "cannot open")?
        .take(max + 1)
        .read_to_end(&mut data)
        .ctx(path, "cannot read")?;
    if data.len() as u64 > max {
        return Err(BuildError::Unrepresentable {
            path: path.display().to_string(),
            reason: format!("larger than the {max} bytes a bundle's {what} may have"),
        });
    }
    Ok(data)
}

pub fn build(req: &BundleRequest) -> Result<BundleSummary, BuildError> {
    let manifest_path = &req.manifest;
    let text = read_small(manifest_path, manifest::MAX_SIZE as u64, "manifest")?;
    let m = Manifest::parse(&text).map_err(|e| BuildError::Unrepresentable {
        path: manifest_path.display().to_string(),
        reason: format!("not a manifest: {e}"),
    })?;
    let sig_path = recovery::source::signature_path(manifest_path);
    let signature = read_small(&sig_path, bundle::MAX_SIGNATURE, "signature")?;
    let dir = manifest_path.parent().unwrap_or(Path::new("."));
    let payload_path = dir.join(&m.payload);
    let mut payload = File::open(&payload_path).ctx(&payload_path, "cannot open the payload")?;
    let size = payload
        .metadata()
        .ctx(&payload_path, "cannot read the size of")?
        .len();
    if size != m.payload_size {
        return Err(BuildError::Unrepresentable {
            path: payload_path.display().to_string(),
            reason: format!(
                "{size} bytes, but the manifest says payload-size={}",
                m.payload_size
            ),
        });
    }
    let unrepresentable = |e: bundle::BundleError| BuildError::Unrepresentable {
        path: manifest_path.display().to_string(),
        reason: e.to_string(),
    };
    let description = bundle::render_sw_description(&m.product, &m.version, &req.hardware)
        .map_err(unrepresentable)?;
    let head = bundle::render_head(
        description.as_bytes(),
        &Manifest::manifest_name(&m.product, &m.version),
        &text,
        &signature,
        &m.payload,
        size,
    )
    .map_err(unrepresentable)?;

    let path = req.out_dir.join(file_name(&m.product, &m.version));
    let mut out = AtomicFile::create(&path).ctx(&path, "cannot create")?;
    out.write_all(&head).ctx(&path, "cannot write")?;
    let mut hashing = HashWriter {
        inner: &mut out,
        hasher: blake3::Hasher::new(),
        count: 0,
    };
    io::copy(&mut payload, &mut hashing).ctx(&payload_path, "cannot copy into the bundle")?;
    let (count, hash) = (hashing.count, hashing.hasher.finalize());
    if count != size || *hash.as_bytes() != m.payload_blake3 {
        return Err(BuildError::Unrepresentable {
            path: payload_path.display().to_string(),
            reason: format!(
                "{count} bytes with BLAKE3 {}, but the manifest says {size} bytes with {}: \
                 the payload changed after signing",
                hash.to_hex(),
                manifest::hex(&m.payload_blake3)
            ),
        });
    }
    let end = head.len() as u64 + size;
    let tail = bundle::render_tail(end);
    out.write_all(&tail).ctx(&path, "cannot write")?;
    out.commit().ctx(&path, "cannot commit")?;
    Ok(BundleSummary {
        path,
        size: end + tail.len() as u64,
        manifest: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageRequest, Source};
    use std::fs;

    fn image(work: &Path) -> crate::image::ImageSummary {
        let (_, key) = crate::keygen::keygen(&work.join("k")).unwrap();
        image_with(work, key)
    }

    fn image_with(work: &Path, key: PathBuf) -> crate::image::ImageSummary {
        let root = work.join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/hello"), "hello\n".repeat(1000)).unwrap();
        crate::image::build(&ImageRequest::fixture(
            Source::Rootfs(root),
            "acme-gw",
            "2.0.1",
            &key,
            &work.join("dist"),
        ))
        .unwrap()
    }

    #[test]
    fn the_bundle_parses_back_to_the_three_files_reproducibly() {
        let work = tempfile::tempdir().unwrap();
        let (public, key) = crate::keygen::keygen(&work.path().join("k")).unwrap();
        let img = image_with(work.path(), key);
        let request = |out: &str| BundleRequest {
            manifest: img.manifest_path.clone(),
            out_dir: work.path().join(out),
            hardware: vec!["1.0".into(), "1.1".into()],
        };
        let s = build(&request("a")).unwrap();
        assert_eq!(s.path, work.path().join("a/acme-gw-2.0.1.swu"));
        let b = fs::read(&s.path).unwrap();
        assert_eq!(b.len() as u64, s.size);
        let l = bundle::parse_head(&b, b.len() as u64).unwrap();
        assert_eq!(l.manifest.name, "acme-gw-2.0.1.manifest");
        assert_eq!(l.payload.name, "acme-gw-2.0.1.tar.zst");
        assert_eq!(b[l.manifest.range()], fs::read(&img.manifest_path).unwrap());
        assert_eq!(
            b[l.signature.range()],
            fs::read(&img.signature_path).unwrap()
        );
        assert_eq!(b[l.payload.range()], fs::read(&img.payload_path).unwrap());
        let desc = std::str::from_utf8(&b[l.sw_description.range()]).unwrap();
        assert!(desc.contains("version = \"2.0.1\";"), "{desc}");
        assert!(
            desc.contains("acme-gw = {\n        hardware-compatibility = [ \"1.0\", \"1.1\" ];")
        );
        let t = l.trailer_offset();
        bundle::check_trailer(t, &b[t as usize..]).unwrap();
        // GNU cpio lists the same entries (what SWUpdate's tools see).
        let listed = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(File::open(&s.path).unwrap())
            .output()
            .expect("cpio: apt-get install cpio");
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout),
            "sw-description\nacme-gw-2.0.1.manifest\nacme-gw-2.0.1.manifest.minisig\nacme-gw-2.0.1.tar.zst\n"
        );
        // `image-builder info` reads it in place, and it verifies.
        let report = crate::info::inspect(&s.path, &[public]);
        assert_eq!(report.exit_code(), 0, "{}", report.info.to_text());
        // Reproducible: a second build gives the same bytes.
        let again = build(&request("b")).unwrap();
        assert_eq!(fs::read(again.path).unwrap(), b);
    }

    #[test]
    fn a_payload_changed_after_signing_is_refused_and_nothing_is_left() {
        let work = tempfile::tempdir().unwrap();
        let img = image(work.path());
        let mut payload = fs::read(&img.payload_path).unwrap();
        let last = payload.len() - 1;
        payload[last] ^= 1;
        fs::write(&img.payload_path, payload).unwrap();
        let err = build(&BundleRequest {
            manifest: img.manifest_path.clone(),
            out_dir: work.path().join("out"),
            hardware: vec![],
        })
        .err()
        .expect("a changed payload must be refused")
        .to_string();
        assert!(err.contains("the payload changed after signing"), "{err}");
        assert_eq!(fs::read_dir(work.path().join("out")).unwrap().count(), 0);
    }
}
