//! `config`: `corral.toml` text plus `CORRAL_*` environment overrides.

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use corral_server::config::ServerConfig;
use corral_server::routes::Router;

/// Variables the fuzzer picks from (plus one name of its own per input).
const VARS: &[&str] = &[
    "CORRAL_LISTEN",
    "CORRAL_DATA_DIR",
    "CORRAL_BASE_DOMAIN",
    "CORRAL_DEFAULT_TIER",
    "CORRAL_HTTP_MAX_HEADER_BYTES",
    "CORRAL_HTTP_MAX_HEADERS",
    "CORRAL_HTTP_IDLE_TIMEOUT",
    "CORRAL_HTTP_KEEP_ALIVE",
    "CORRAL_ROUTING_PATH",
    "CORRAL_ROUTING_ADMIN_HOST",
    "CORRAL_ADMIN_MAX_CONCURRENT",
    "CORRAL_TIERS_FREE_MEMORY_BYTES",
    "CORRAL_TIERS_PRO_REQUESTS_PER_MONTH",
    "CORRAL_THRESHOLDS_RAM_FIRE",
    "CORRAL_CONFIG",
];

/// Byte 0 is the number of variables; each is a name from [`VARS`] (or an
/// arbitrary `CORRAL_` name) and a value; the rest is the config file.
///
/// Invariants: a refusal is a typed [`ConfigError`](corral_server::config::ConfigError)
/// with a message; an accepted config prints as TOML that loads back to the
/// same config, and its routing settings build a router.
pub fn config(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let n = u.arbitrary::<u8>().unwrap_or(0) % 4;
    let mut env = BTreeMap::new();
    for _ in 0..n {
        let name = match u.choose(VARS) {
            Ok(v) => (*v).to_owned(),
            Err(_) => break,
        };
        let name = if u.arbitrary::<bool>().unwrap_or(false) {
            format!("CORRAL_{}", u.arbitrary::<&str>().unwrap_or(""))
        } else {
            name
        };
        let value: &str = u.arbitrary().unwrap_or("");
        env.insert(name, value.to_owned());
    }
    let text = String::from_utf8_lossy(u.take_rest());
    let file = (!text.is_empty()).then_some(&*text);
    match ServerConfig::load(file, &env) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(cfg) => {
            let printed = cfg.to_toml();
            assert!(!printed.is_empty(), "a valid config does not print");
            let back = ServerConfig::load(Some(&printed), &BTreeMap::new())
                .unwrap_or_else(|e| panic!("printed config does not load: {e}\n{printed}"));
            let mut cfg = cfg;
            cfg.env_warnings.clear();
            assert_eq!(back, cfg, "config changed through its own TOML");
            let _ = Router::new(cfg.base_domain.as_deref()).routing(&cfg.routing);
        }
    }
}
