//! Hand-rolled option parsing: `--name VALUE`, `--name=VALUE`, `--flag`.
//! Anything else is a usage error (exit 64).

use std::collections::HashMap;

use crate::Failure;

pub struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// Parse `argv` allowing the options in `valued` (which take a value) and
    /// `flags` (which take none).
    pub fn parse(argv: &[String], valued: &[&str], flags: &[&str]) -> Result<Args, Failure> {
        let usage = |m: String| Failure::Usage(m);
        let mut a = Args {
            values: HashMap::new(),
            flags: Vec::new(),
        };
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            let Some(opt) = arg.strip_prefix("--") else {
                return Err(usage(format!("unexpected argument {arg:?}")));
            };
            let (name, inline) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (opt, None),
            };
            if flags.contains(&name) {
                if inline.is_some() {
                    return Err(usage(format!("--{name} takes no value")));
                }
                a.flags.push(name.to_string());
            } else if valued.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| usage(format!("--{name} needs a value")))?,
                };
                if value.is_empty() {
                    return Err(usage(format!("--{name} needs a non-empty value")));
                }
                if a.values.insert(name.to_string(), value).is_some() {
                    return Err(usage(format!("--{name} given twice")));
                }
            } else {
                return Err(usage(format!("unknown option --{name}")));
            }
        }
        Ok(a)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn need(&self, name: &str) -> Result<&str, Failure> {
        self.get(name)
            .ok_or_else(|| Failure::Usage(format!("--{name} is required")))
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}
