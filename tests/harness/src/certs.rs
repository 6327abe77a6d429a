//! Client certificates for the mutual TLS tests (RFC 8705), made by the openssl command line
//! (not by pg_oauth's code): certificate authorities, certificates they issue, self-signed
//! ones, and what the tests expect of them (thumbprints, `x5c`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;

/// A certificate and its private key, PEM files in a directory of their own.
pub struct Cert {
    pub crt: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (apt install openssl)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Cert {
    fn paths(dir: &Path, name: &str) -> Cert {
        std::fs::create_dir_all(dir).unwrap();
        Cert {
            crt: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// A certificate authority `CN=<name>`.
    pub fn authority(dir: &Path, name: &str) -> Cert {
        let cert = Cert::paths(dir, name);
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subject];
        args.extend(EC);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        cert.write(&args, dir);
        cert
    }

    /// A self-signed client certificate with `subject` (`/O=.../CN=...`).
    pub fn self_signed(dir: &Path, name: &str, subject: &str) -> Cert {
        let cert = Cert::paths(dir, name);
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", subject];
        args.extend(EC);
        args.extend(["-addext", "basicConstraints=critical,CA:FALSE"]);
        args.extend(["-addext", "extendedKeyUsage=clientAuth"]);
        cert.write(&args, dir);
        cert
    }

    /// A client certificate `ca` issues, with `subject` and the subjectAltName `san`.
    pub fn issued(dir: &Path, name: &str, subject: &str, san: &str, ca: &Cert) -> Cert {
        let cert = Cert::paths(dir, name);
        let csr = dir.join(format!("{name}.csr"));
        let ext = dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n\
                 subjectAltName={san}\n"
            ),
        )
        .unwrap();
        let (key, csr_s) = (cert.key.display().to_string(), csr.display().to_string());
        let mut args = vec!["req", "-new", "-nodes", "-subj", subject, "-keyout", &key];
        args.extend(EC);
        args.extend(["-out", &csr_s]);
        openssl(&args, dir);
        let (ca_crt, ca_key) = (ca.crt.display().to_string(), ca.key.display().to_string());
        let (crt, ext_s) = (cert.crt.display().to_string(), ext.display().to_string());
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr_s,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext_s,
                "-out",
                &crt,
            ],
            dir,
        );
        cert
    }

    fn write(&self, args: &[&str], dir: &Path) {
        let (key, crt) = (
            self.key.display().to_string(),
            self.crt.display().to_string(),
        );
        let mut args = args.to_vec();
        args.extend(["-keyout", &key, "-out", &crt]);
        openssl(&args, dir);
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        std::fs::read_to_string(&self.crt).unwrap()
    }

    /// Certificate and key in one PEM, as HTTP clients take an identity.
    pub fn identity(&self) -> Vec<u8> {
        let mut pem = std::fs::read(&self.crt).unwrap();
        pem.extend(std::fs::read(&self.key).unwrap());
        pem
    }

    /// The certificate's DER.
    pub fn der(&self) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&self.crt)
            .output()
            .expect("openssl");
        assert!(out.status.success());
        out.stdout
    }

    /// RFC 8705 §3.1 `x5t#S256`: base64url SHA-256 of the DER, by `openssl dgst`.
    pub fn x5t(&self) -> String {
        use std::io::Write;
        let mut dgst = Command::new("openssl")
            .args(["dgst", "-sha256", "-binary"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl");
        dgst.stdin.take().unwrap().write_all(&self.der()).unwrap();
        let out = dgst.wait_with_output().unwrap();
        assert_eq!(out.stdout.len(), 32);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out.stdout)
    }

    /// A JWK Set registering this certificate (`x5c`, RFC 7517 §4.7), as a
    /// self_signed_tls_client_auth client registers it (RFC 8705 §2.2).
    pub fn jwks(&self) -> serde_json::Value {
        let x5c = base64::engine::general_purpose::STANDARD.encode(self.der());
        serde_json::json!({ "keys": [{ "kty": "EC", "crv": "P-256", "use": "sig", "x5c": [x5c] }] })
    }
}
