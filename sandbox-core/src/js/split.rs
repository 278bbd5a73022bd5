//! Splits the prelude (one file, `prelude.js`) into its core, evaluated in
//! every tenant runtime at wake, and the parts a runtime reads and evaluates
//! only when its code first touches them (streams, URL, events, Blob, ...).
//!
//! A `// @part NAME` line starts a section of part NAME (`core` goes back to
//! the core); a part may have several sections. Each part becomes its own ES
//! module, `corral:NAME`, and the core stays `corral:prelude`:
//!
//! - a part imports from the core every core name it mentions, and takes the
//!   built-in globals it mentions (`WeakMap`, `Set`, ...) from a snapshot the
//!   core made when it loaded, before any tenant code ran;
//! - the core gets, for every name of a part that the core or another part
//!   mentions, a stub binding that loads the part on first call and is then
//!   rebound to the real value (`is*` predicates are `false` until then: no
//!   object of a part that never loaded can exist);
//! - a core line `define("X", X);` of an X a part declares becomes
//!   `defineLazy("X", "part");`.
//!
//! Names are found by a plain scan: the top-level declarations are the
//! unindented `function`, `class`, `const` and `let` lines, and a section
//! "mentions" every identifier-shaped token in it, comments and strings
//! included. Mentioning too much costs an unused import or stub; nothing is
//! ever missed.

use std::collections::{BTreeMap, BTreeSet};

/// The part every runtime evaluates at wake.
pub(crate) const CORE: &str = "core";

/// What marks the start of a part's section.
const MARKER: &str = "// @part ";

/// The built-in globals a part may name that its module takes from the
/// core's load-time snapshot instead of the global object. (The core's own
/// primordials, `Object`, `Array`, ..., reach a part as core imports.)
const INTRINSICS: &[&str] = &[
    "AggregateError",
    "Array",
    "ArrayBuffer",
    "Atomics",
    "BigInt",
    "BigInt64Array",
    "BigUint64Array",
    "Boolean",
    "DataView",
    "Date",
    "Error",
    "EvalError",
    "FinalizationRegistry",
    "Float16Array",
    "Float32Array",
    "Float64Array",
    "Function",
    "Int16Array",
    "Int32Array",
    "Int8Array",
    "Iterator",
    "JSON",
    "Map",
    "Math",
    "Number",
    "Object",
    "Promise",
    "Proxy",
    "RangeError",
    "ReferenceError",
    "Reflect",
    "RegExp",
    "Set",
    "SharedArrayBuffer",
    "String",
    "Symbol",
    "SyntaxError",
    "TypeError",
    "URIError",
    "Uint16Array",
    "Uint32Array",
    "Uint8Array",
    "Uint8ClampedArray",
    "WeakMap",
    "WeakRef",
    "WeakSet",
    "decodeURI",
    "decodeURIComponent",
    "encodeURI",
    "encodeURIComponent",
    "globalThis",
    "isFinite",
    "isNaN",
    "parseFloat",
    "parseInt",
];

/// The core's snapshot of [`INTRINSICS`], exported to the parts.
const SNAPSHOT: &str = "__corral_intrinsics";

/// One module of the split prelude.
#[derive(Debug)]
pub(crate) struct Part {
    /// [`CORE`] or the part's name.
    pub(crate) name: &'static str,
    /// Its module source.
    pub(crate) source: String,
}

impl Part {
    /// The module name the part is compiled under (its imports name it).
    pub(crate) fn module_name(&self) -> String {
        if self.name == CORE {
            "corral:prelude".into()
        } else {
            format!("corral:{}", self.name)
        }
    }
}

/// The sections of one part, in file order.
struct Sections {
    name: &'static str,
    lines: Vec<&'static str>,
}

/// `source` as one module, for an engine that does not load parts lazily
/// (V8): every part evaluates with the core, and the lazy properties the
/// core defines anyway (`crypto.subtle`) settle at its end.
#[cfg_attr(not(feature = "v8"), allow(dead_code))]
pub(crate) fn whole(source: &'static str) -> String {
    let sections = sections(source);
    let mut out = String::with_capacity(source.len() + 1024);
    out.push_str(source);
    out.push_str("// ------------------------------------------ written by js/split.rs --\n");
    out.push_str("const partBinders = { __proto__: null");
    for s in sections.iter().skip(1) {
        out.push_str(&format!(", \"{}\": () => {{}}", s.name));
    }
    out.push_str(" };\n");
    for s in sections.iter().skip(1) {
        let names = declarations(&s.lines);
        out.push_str(&format!(
            "partLoaded(\"{}\", {{ __proto__: null, {} }});\n",
            s.name,
            names.join(", ")
        ));
    }
    out
}

/// `source`'s lines by part: the core first, then the parts in the order
/// they first appear.
fn sections(source: &'static str) -> Vec<Sections> {
    let mut sections: Vec<Sections> = vec![Sections {
        name: CORE,
        lines: Vec::new(),
    }];
    let mut current = 0;
    for line in source.lines() {
        if let Some(name) = line.strip_prefix(MARKER) {
            let name = name.trim();
            current = match sections.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    sections.push(Sections {
                        name,
                        lines: Vec::new(),
                    });
                    sections.len() - 1
                }
            };
        }
        sections[current].lines.push(line);
    }
    sections
}

/// Splits `source` into the core (first) and its parts (in the order they
/// first appear).
pub(crate) fn split(source: &'static str) -> Vec<Part> {
    let sections = sections(source);

    let decls: Vec<Vec<&str>> = sections.iter().map(|s| declarations(&s.lines)).collect();
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, names) in decls.iter().enumerate() {
        for &n in names {
            owner.insert(n, i);
        }
    }
    // The core's lines with each `define("X", X);` of a part's X made lazy.
    let core_lines: Vec<String> = sections[0]
        .lines
        .iter()
        .map(|&line| match lazy_define(line, &owner) {
            Some((name, part)) => {
                format!("defineLazy(\"{name}\", \"{}\");", sections[part].name)
            }
            None => line.to_owned(),
        })
        .collect();
    let mentions: Vec<BTreeSet<&str>> = sections.iter().map(|s| identifiers(&s.lines)).collect();

    // The names of parts that the core or another part mentions: stubs in
    // the core, one binder per part.
    let mut stubs: Vec<Vec<&str>> = vec![Vec::new(); sections.len()];
    for (part, names) in decls.iter().enumerate().skip(1) {
        for &n in names {
            let mentioned = mentions
                .iter()
                .enumerate()
                .any(|(i, m)| i != part && m.contains(n));
            if mentioned {
                stubs[part].push(n);
            }
        }
    }
    let core_decls: BTreeSet<&str> = decls[0].iter().copied().collect();
    let mut core_exports: BTreeSet<&str> = BTreeSet::new();
    let mut snapshot: BTreeSet<&str> = BTreeSet::new();
    let mut parts = Vec::new();
    for (i, section) in sections.iter().enumerate().skip(1) {
        let own: BTreeSet<&str> = decls[i].iter().copied().collect();
        let imports: Vec<&str> = mentions[i]
            .iter()
            .copied()
            .filter(|n| !own.contains(n))
            .filter(|n| core_decls.contains(n) || owner.get(n).is_some_and(|&o| o != i))
            .collect();
        let globals: Vec<&str> = mentions[i]
            .iter()
            .copied()
            .filter(|n| INTRINSICS.contains(n) && !owner.contains_key(n))
            .collect();
        core_exports.extend(imports.iter().copied());
        snapshot.extend(globals.iter().copied());
        let mut src = String::new();
        let mut import_list = imports.clone();
        if !globals.is_empty() {
            import_list.push(SNAPSHOT);
        }
        if !import_list.is_empty() {
            src.push_str(&format!(
                "import {{ {} }} from \"corral:prelude\";\n",
                import_list.join(", ")
            ));
        }
        if !globals.is_empty() {
            src.push_str(&format!(
                "const {{ {} }} = {SNAPSHOT};\n",
                globals.join(", ")
            ));
        }
        for line in &section.lines {
            src.push_str(line);
            src.push('\n');
        }
        if !decls[i].is_empty() {
            src.push_str(&format!("export {{ {} }};\n", decls[i].join(", ")));
        }
        parts.push(Part {
            name: section.name,
            source: src,
        });
    }

    let mut core = String::new();
    for line in &core_lines {
        core.push_str(line);
        core.push('\n');
    }
    core.push_str("// ------------------------------------------ written by js/split.rs --\n");
    core.push_str(&format!("const {SNAPSHOT} = {{ __proto__: null"));
    for g in &snapshot {
        core.push_str(&format!(", {g}: globalThis.{g}"));
    }
    core.push_str(" };\n");
    for (part, names) in stubs.iter().enumerate().skip(1) {
        for &n in names {
            if is_predicate(n) {
                core.push_str(&format!("let {n} = () => false;\n"));
            } else {
                core.push_str(&format!(
                    "let {n} = lazyStub(\"{}\", () => {n});\n",
                    sections[part].name
                ));
            }
        }
    }
    core.push_str("const partBinders = { __proto__: null");
    for (part, names) in stubs.iter().enumerate().skip(1) {
        core.push_str(&format!(", \"{}\": (ns) => {{", sections[part].name));
        for &n in names {
            core.push_str(&format!(" {n} = ns.{n};"));
        }
        core.push_str(" }");
    }
    core.push_str(" };\n");
    core_exports.insert(SNAPSHOT);
    let exports: Vec<&str> = core_exports.into_iter().collect();
    core.push_str(&format!("export {{ {} }};\n", exports.join(", ")));

    let mut out = vec![Part {
        name: CORE,
        source: core,
    }];
    out.extend(parts);
    out
}

/// `isFoo`: a brand check, false for every value until its part loads.
fn is_predicate(name: &str) -> bool {
    name.strip_prefix("is")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_uppercase())
}

/// `(X, its part)` if `line` is `define("X", X);` of an X a part declares.
fn lazy_define(line: &str, owner: &BTreeMap<&str, usize>) -> Option<(String, usize)> {
    let rest = line.strip_prefix("define(\"")?;
    let (name, rest) = rest.split_once('"')?;
    if rest != format!(", {name});") {
        return None;
    }
    let part = *owner.get(name)?;
    (part != 0).then(|| (name.to_owned(), part))
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// The identifier at the start of `s`, if any.
fn leading_ident(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    if b.is_empty() || !is_ident_start(b[0]) {
        return None;
    }
    let end = b.iter().position(|&c| !is_ident_char(c)).unwrap_or(b.len());
    Some(&s[..end])
}

/// The names declared at the top level of `lines` (unindented declarations).
fn declarations(lines: &[&'static str]) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let rest = line.strip_prefix("async ").unwrap_or(line);
        if let Some(r) = rest.strip_prefix("function") {
            let r = r.trim_start_matches('*').trim_start();
            out.extend(leading_ident(r));
        } else if let Some(r) = rest.strip_prefix("class ") {
            out.extend(leading_ident(r));
        } else if let Some(r) = rest
            .strip_prefix("const ")
            .or_else(|| rest.strip_prefix("let "))
        {
            if let Some(inner) = r.strip_prefix('{') {
                // `const { A, B: b, ... } = ...;` possibly over many lines.
                let mut body: Vec<&'static str> = vec![inner];
                while !body.last().is_some_and(|l| l.contains('}')) && i < lines.len() {
                    body.push(lines[i]);
                    i += 1;
                }
                for l in body {
                    let l = l.split('}').next().unwrap_or("");
                    for item in l.split(',') {
                        let item = item.split('=').next().unwrap_or("");
                        let bound = item.rsplit(':').next().unwrap_or("").trim();
                        out.extend(leading_ident(bound));
                    }
                }
            } else {
                // `let a, b; // ...` declares each; otherwise the first name.
                let code = r.split("//").next().unwrap_or("").trim_end();
                let simple_list = code.ends_with(';')
                    && code[..code.len() - 1]
                        .split(',')
                        .all(|n| leading_ident(n.trim()).is_some_and(|id| id == n.trim()));
                if simple_list {
                    for n in code[..code.len() - 1].split(',') {
                        out.extend(leading_ident(n.trim()));
                    }
                } else {
                    out.extend(leading_ident(r));
                }
            }
        }
    }
    out
}

/// Every identifier-shaped token in `lines`.
fn identifiers(lines: &[&'static str]) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    for line in lines {
        scan(line, |id| {
            out.insert(id);
        });
    }
    out
}

fn scan<'a>(line: &'a str, mut f: impl FnMut(&'a str)) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if is_ident_start(b[i]) && (i == 0 || !is_ident_char(b[i - 1])) {
            let start = i;
            while i < b.len() && is_ident_char(b[i]) {
                i += 1;
            }
            f(&line[start..i]);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
const { Array, Object } = globalThis;
const host = 1;
let a, b; // two
function define(n, v) {}
// @part one
let isOne;
class One { static { isOne = (x) => #p in x; } #p; m() { return new WeakMap(); } }
function helper() { return host; }
// @part core
function useOne(x) { return isOne(x) ? helper() : 0; }
define(\"One\", One);
export default a;
";

    #[test]
    fn splits_into_core_and_parts() {
        let parts = split(SRC);
        assert_eq!(parts.len(), 2);
        let core = &parts[0].source;
        assert!(core.contains("defineLazy(\"One\", \"one\");"), "{core}");
        assert!(core.contains("let isOne = () => false;"), "{core}");
        assert!(
            core.contains("let helper = lazyStub(\"one\", () => helper);"),
            "{core}"
        );
        assert!(core.contains("\"one\": (ns) => {"), "{core}");
        assert!(core.contains("WeakMap: globalThis.WeakMap"), "{core}");
        assert!(
            core.contains("export { __corral_intrinsics, host };"),
            "{core}"
        );
        let one = &parts[1];
        assert_eq!(one.name, "one");
        assert_eq!(one.module_name(), "corral:one");
        assert!(
            one.source
                .starts_with("import { host, __corral_intrinsics } from \"corral:prelude\";\nconst { WeakMap } = __corral_intrinsics;\n"),
            "{}",
            one.source
        );
        assert!(
            one.source.ends_with("export { isOne, One, helper };\n"),
            "{}",
            one.source
        );
    }

    #[test]
    fn declarations_found() {
        let lines: Vec<&'static str> = SRC.lines().collect();
        let d = declarations(&lines);
        for n in [
            "Array", "Object", "host", "a", "b", "define", "isOne", "One", "helper", "useOne",
        ] {
            assert!(d.contains(&n), "{n} in {d:?}");
        }
    }
}
