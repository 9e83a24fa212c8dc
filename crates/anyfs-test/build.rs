//! Derives the suite's test lists from its source, so that a test is named
//! in one place: its function.
//!
//! Every public function of a suite module that takes one subject by
//! reference (`pub fn name<B: ...>(fs: &B)`) or one maker
//! (`pub fn name<B: ...>(make: impl Fn() -> B)`) is a test. The script
//! writes `module_tests!`, which expands to one `#[test]` per such function
//! of a module; `conformance!` calls it for the modules each capability
//! brings.

use std::path::Path;
use std::{env, fs};

/// How a test function takes its subject.
enum Takes {
    Subject,
    Maker,
}

fn main() {
    let src = Path::new("src");
    println!("cargo::rerun-if-changed=src");
    let mut modules: Vec<(String, Vec<(String, Takes)>)> = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(src)
        .expect("the suite's src directory is readable")
        .map(|entry| entry.expect("a src entry is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    entries.sort();
    for path in entries {
        let module = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("module file names are UTF-8")
            .to_owned();
        if module == "lib" {
            continue;
        }
        let text = fs::read_to_string(&path).expect("a suite module is readable");
        let file = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let tests: Vec<_> = file.items.iter().filter_map(test_of).collect();
        if !tests.is_empty() {
            modules.push((module, tests));
        }
    }

    let mut out = String::from(
        "/// Expands to one `#[test]` for each test of one module of the suite,\n\
         /// each run on a fresh subject from `make` (a function).\n\
         ///\n\
         /// [`conformance!`] calls it for the modules each capability brings;\n\
         /// call it directly to run one module against a subject of your own:\n\
         ///\n\
         /// ```ignore\n\
         /// mod links {\n\
         ///     use super::*;\n\
         ///     anyfs_test::module_tests!(links, make_backend);\n\
         /// }\n\
         /// ```\n\
         ///\n\
         /// The modules and their tests are listed from the suite's source at\n\
         /// build time:\n",
    );
    for (module, tests) in &modules {
        let names: Vec<&str> = tests.iter().map(|(name, _)| name.as_str()).collect();
        let names = names.join(", ");
        out.push_str(&format!("/// - [`{module}`](crate::{module}): {names}\n"));
    }
    out.push_str(
        "///\n\
         /// `module_tests!(links, make_backend, if ready)` runs each test only\n\
         /// when the function `ready() -> bool` says so (a subject on a server\n\
         /// that may be missing).\n",
    );
    out.push_str("#[macro_export]\nmacro_rules! module_tests {\n");
    for (module, tests) in &modules {
        out.push_str(&format!(
            "    ({module}, $make:path) => {{\n        \
             $crate::module_tests!({module}, $make, if $crate::always_ready);\n    }};\n"
        ));
        out.push_str(&format!(
            "    ({module}, $make:path, if $ready:path) => {{\n"
        ));
        for (name, takes) in tests {
            let call = match takes {
                Takes::Subject => format!("$crate::{module}::{name}(&$make())"),
                Takes::Maker => format!("$crate::{module}::{name}($make)"),
            };
            out.push_str(&format!(
                "        #[test]\n        fn {name}() {{\n            \
                 if !$ready() {{\n                return;\n            }}\n            \
                 {call};\n        }}\n"
            ));
        }
        out.push_str("    };\n");
    }
    out.push_str("}\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("module_tests.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}

/// The test a module item is, if it is one.
fn test_of(item: &syn::Item) -> Option<(String, Takes)> {
    let syn::Item::Fn(function) = item else {
        return None;
    };
    if !matches!(function.vis, syn::Visibility::Public(_)) {
        return None;
    }
    let signature = &function.sig;
    if signature.generics.type_params().count() != 1 || signature.inputs.len() != 1 {
        return None;
    }
    let Some(syn::FnArg::Typed(argument)) = signature.inputs.first() else {
        return None;
    };
    let takes = match &*argument.ty {
        syn::Type::Reference(_) => Takes::Subject,
        syn::Type::ImplTrait(_) => Takes::Maker,
        _ => return None,
    };
    Some((signature.ident.to_string(), takes))
}
