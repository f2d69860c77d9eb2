//! The templates of a target's command line, environment and files,
//! rendered with minijinja (as the report is).
//!
//! They are given `port` (a free loopback port), `dir` (the process's fresh
//! temporary directory, for pid files, logs and temp paths), `root` (the
//! suite's root directory), `redis_port` (the port of the target's Redis),
//! `backend_port` (that of its backend), `publish_port` (a second free port
//! of the server's own) and, when it serves HTTPS, `tls_cert` and `tls_key`
//! (the certificate and key files; none otherwise, so that a file can say
//! `{% if tls_cert %}`). A port the target has none of renders as its own
//! placeholder (`{{ backend_port }}` stays `{{ backend_port }}` in a Redis's
//! command); any other name is an error. Blocks take their line with them
//! (`trim_blocks`, `lstrip_blocks`), and a file keeps its last newline.

use std::path::Path;

use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};

use crate::tls::TlsFiles;

/// The values of a template's placeholders.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    /// `{{ port }}`.
    pub port: u16,
    /// `{{ dir }}`.
    pub dir: &'a Path,
    /// `{{ root }}`.
    pub root: &'a Path,
    /// `{{ redis_port }}`, when the target has a Redis.
    pub redis_port: Option<u16>,
    /// `{{ backend_port }}`, when the target has a backend.
    pub backend_port: Option<u16>,
    /// `{{ publish_port }}`, when the server publishes on a port of its own.
    pub publish_port: Option<u16>,
    /// `{{ tls_cert }}` and `{{ tls_key }}`, when the server serves HTTPS.
    pub tls: Option<&'a TlsFiles>,
}

impl Placeholders<'_> {
    fn context(&self) -> Value {
        let port_or_placeholder = |name: &str, port: Option<u16>| {
            port.map_or_else(|| Value::from(format!("{{{{ {name} }}}}")), Value::from)
        };
        let path = |p: &Path| Value::from(p.display().to_string());
        minijinja::context! {
            port => self.port,
            dir => path(self.dir),
            root => path(self.root),
            redis_port => port_or_placeholder("redis_port", self.redis_port),
            backend_port => port_or_placeholder("backend_port", self.backend_port),
            publish_port => port_or_placeholder("publish_port", self.publish_port),
            tls_cert => self.tls.map(|t| path(&t.cert)),
            tls_key => self.tls.map(|t| path(&t.key)),
        }
    }
}

fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    Ok(env)
}

/// Renders the template `text` with `p`.
///
/// # Errors
/// When `text` is not a valid template or names a value there is none of.
pub fn render(text: &str, p: Placeholders<'_>) -> anyhow::Result<String> {
    environment()?
        .render_str(text, p.context())
        .map_err(|e| anyhow::anyhow!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_every_known_placeholder() {
        let (dir, root) = (Path::new("/tmp/bench-x"), Path::new("/repo"));
        let p = Placeholders {
            port: 8000,
            dir,
            root,
            redis_port: Some(6000),
            backend_port: Some(7000),
            publish_port: Some(9000),
            tls: None,
        };
        assert_eq!(
            render(
                "http_port=127.0.0.1:{{ port }} push_in_http_port={{ publish_port }} \
                 route=127.0.0.1:{{ backend_port }} redis={{ redis_port }} {{ dir }}/run {{ root }}/x",
                p
            )
            .unwrap(),
            "http_port=127.0.0.1:8000 push_in_http_port=9000 route=127.0.0.1:7000 \
             redis=6000 /tmp/bench-x/run /repo/x"
        );
        // Placeholders the target has no value for stay as they are.
        let bare = Placeholders {
            redis_port: None,
            backend_port: None,
            publish_port: None,
            ..p
        };
        assert_eq!(
            render(
                "{{ port }} {{ publish_port }} {{ backend_port }} {{ redis_port }}",
                bare
            )
            .unwrap(),
            "8000 {{ publish_port }} {{ backend_port }} {{ redis_port }}"
        );
    }

    #[test]
    fn https_settings_render_only_for_https() {
        let (dir, root) = (Path::new("/tmp/bench-x"), Path::new("/repo"));
        let plain = Placeholders {
            port: 8000,
            dir,
            root,
            redis_port: None,
            backend_port: None,
            publish_port: None,
            tls: None,
        };
        let text = "listen {{ port }}{% if tls_cert %} ssl{% endif %};\n\
                    {% if tls_cert %}\ncert {{ tls_cert }};\nkey {{ tls_key }};\n{% endif %}\n\
                    end\n";
        assert_eq!(render(text, plain).unwrap(), "listen 8000;\nend\n");
        let files = TlsFiles::make().unwrap();
        let tls = Placeholders {
            tls: Some(&files),
            ..plain
        };
        assert_eq!(
            render(text, tls).unwrap(),
            format!(
                "listen 8000 ssl;\ncert {};\nkey {};\nend\n",
                files.cert.display(),
                files.key.display()
            )
        );
        // A name with no value is an error, not an empty string.
        assert!(render("{{ prot }}", plain).is_err());
    }
}
