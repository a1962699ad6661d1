//! Settings from a TOML file, below environment variables and flags.

/// The `ORGS_*` variables a TOML configuration file sets. A top-level key names
/// the variable without its prefix (`listen_addr = "0.0.0.0:50051"` sets
/// `ORGS_LISTEN_ADDR`); a table prefixes its keys (`[billing]`
/// `free_organizations = 100` sets `ORGS_BILLING_FREE_ORGANIZATIONS`). Arrays
/// become comma-separated lists. A key that names no variable of `known` is an
/// error, so a typo never passes silently.
pub fn file_variables(
    path: &std::path::Path,
    known: &[String],
) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("cannot read the configuration file {}: {e}", path.display())
    })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid TOML: {e}", path.display()))?;
    let mut variables = Vec::new();
    flatten(&table, "ORGS", &mut variables, path)?;
    for (name, _) in &variables {
        if !known.iter().any(|k| k == name) {
            let key = name.trim_start_matches("ORGS_").to_lowercase();
            anyhow::bail!("{}: unknown setting `{key}` ({name})", path.display());
        }
    }
    Ok(variables)
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut Vec<(String, String)>,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    for (key, value) in table {
        let name = format!("{prefix}_{}", key.to_uppercase().replace('-', "_"));
        let scalar = |value: &toml::Value| -> anyhow::Result<String> {
            Ok(match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    anyhow::bail!("{}: `{key}` cannot be {}", path.display(), other.type_str())
                }
            })
        };
        match value {
            toml::Value::Table(inner) => flatten(inner, &name, out, path)?,
            toml::Value::Array(items) => {
                let items: anyhow::Result<Vec<String>> = items.iter().map(scalar).collect();
                out.push((name, items?.join(",")));
            }
            other => out.push((name, scalar(other)?)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_maps_to_variables_and_refuses_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("orgs-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("orgs.toml");
        std::fs::write(
            &path,
            "listen_addr = \"0.0.0.0:50051\"\n[billing]\nfree_organizations = 5\n[auth]\nhs256_secret = \"s\"\n\nconsumer_email_domains = [\"a.com\", \"b.com\"]\n",
        )
        .unwrap();
        let known: Vec<String> = [
            "ORGS_LISTEN_ADDR",
            "ORGS_BILLING_FREE_ORGANIZATIONS",
            "ORGS_AUTH_HS256_SECRET",
            "ORGS_AUTH_CONSUMER_EMAIL_DOMAINS",
        ]
        .map(String::from)
        .to_vec();
        let mut variables = file_variables(&path, &known).unwrap();
        variables.sort();
        assert_eq!(
            variables,
            [
                (
                    "ORGS_AUTH_CONSUMER_EMAIL_DOMAINS".to_string(),
                    "a.com,b.com".to_string()
                ),
                ("ORGS_AUTH_HS256_SECRET".to_string(), "s".to_string()),
                (
                    "ORGS_BILLING_FREE_ORGANIZATIONS".to_string(),
                    "5".to_string()
                ),
                ("ORGS_LISTEN_ADDR".to_string(), "0.0.0.0:50051".to_string()),
            ]
        );
        std::fs::write(&path, "listen_adr = \"x\"\n").unwrap();
        let err = file_variables(&path, &known).unwrap_err().to_string();
        assert!(err.contains("unknown setting `listen_adr`"), "{err}");
        std::fs::write(&path, "listen_addr = \n").unwrap();
        assert!(file_variables(&path, &known).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
