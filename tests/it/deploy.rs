//! What can be checked of the container files without a container engine: that the
//! Dockerfile and docker-compose.yml agree with each other and with the crate.

use serde_json::Value;

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// docker-compose.yml with its merge keys (`<<: *server`) applied, as compose does.
fn compose() -> Value {
    let mut yaml: serde_norway::Value =
        serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    yaml.apply_merge().expect("merge keys apply");
    serde_norway::from_value(yaml).expect("as JSON values")
}

/// The port the server listens on inside the container, from the Dockerfile's BIND.
fn container_port() -> String {
    let dockerfile = read("Dockerfile");
    let bind = dockerfile.lines().find_map(|l| l.trim().strip_prefix("ENV BIND=")).expect("Dockerfile sets BIND");
    bind.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn dockerfile_builds_this_binary_and_ships_what_it_embeds() {
    let dockerfile = read("Dockerfile");
    let cargo = read("Cargo.toml");
    assert!(cargo.contains("name = \"bizkit-mirror\""), "binary name");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("target/release/bizkit-mirror"));
    assert!(dockerfile.contains("ENTRYPOINT [\"bizkit-mirror\"]"));
    let port = container_port();
    assert!(dockerfile.contains(&format!("EXPOSE {port}")), "EXPOSE matches BIND");
    assert!(dockerfile.contains(&format!("http://127.0.0.1:{port}/readyz")), "HEALTHCHECK probes /readyz");
    // The builder's toolchain is at least the crate's minimum.
    let image = dockerfile.lines().find_map(|l| l.strip_prefix("FROM rust:")).expect("rust builder image");
    let minor = |v: &str| {
        v.split('.')
            .nth(1)
            .and_then(|m| m.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|m| m.parse::<u32>().ok())
    };
    let needed =
        cargo.lines().find_map(|l| l.strip_prefix("rust-version = ")).map(|v| v.trim_matches('"').to_owned()).unwrap();
    assert!(minor(image) >= minor(&needed), "builder {image} < rust-version {needed}");
    // Files embedded at compile time are in the build context.
    let ignored = read(".dockerignore");
    for embedded in ["migrations", "openapi.yaml", "src", "Cargo.lock"] {
        assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(embedded).exists(), "{embedded}");
        assert!(!ignored.lines().any(|l| l.trim().trim_end_matches('/') == embedded), "{embedded} is docker-ignored");
    }
}

#[test]
fn compose_runs_postgres_and_the_server_with_a_readiness_healthcheck() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    let server = &services["server"];
    let db = &services["db"];
    assert!(db["image"].as_str().unwrap().starts_with("postgres:"));
    // The server reaches the db service by its name, with the db's own credentials.
    let url = url::Url::parse(server["environment"]["DATABASE_URL"].as_str().unwrap()).unwrap();
    assert_eq!(url.scheme(), "postgres");
    assert!(services.contains_key(url.host_str().unwrap()), "DATABASE_URL host is a service");
    assert_eq!(url.username(), db["environment"]["POSTGRES_USER"].as_str().unwrap());
    assert_eq!(url.password().unwrap(), db["environment"]["POSTGRES_PASSWORD"].as_str().unwrap());
    assert_eq!(url.path(), format!("/{}", db["environment"]["POSTGRES_DB"].as_str().unwrap()));
    assert_eq!(server["depends_on"]["db"]["condition"], "service_healthy");
    // Published on the port it listens on, and health-checked on /readyz there.
    let port = container_port();
    let bind = server["environment"]["BIND"].as_str().unwrap();
    assert!(bind.ends_with(&format!(":{port}")), "{bind}");
    let ports: Vec<&str> = server["ports"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(ports.iter().any(|p| p.ends_with(&format!(":{port}"))), "{ports:?}");
    let check = server["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(check.contains(&format!("127.0.0.1:{port}/readyz")), "{check}");
    assert_eq!(server["environment"]["LOG_FORMAT"], "json");
    assert!(c["volumes"].as_object().unwrap().contains_key("pgdata"));
}

#[test]
fn compose_runs_two_instances_sharing_postgres_and_redis() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    assert!(services["redis"]["image"].as_str().unwrap().starts_with("redis:"));
    assert!(services["redis"]["healthcheck"]["test"].to_string().contains("ping"));
    let instances: Vec<&Value> = services.values().filter(|s| s["environment"]["DATABASE_URL"].is_string()).collect();
    assert!(instances.len() >= 2, "at least two server instances");
    let port = container_port();
    let mut published = Vec::new();
    for instance in &instances {
        assert_eq!(instance["environment"], instances[0]["environment"], "every instance is configured alike");
        let redis = url::Url::parse(instance["environment"]["REDIS_URL"].as_str().expect("REDIS_URL")).unwrap();
        assert_eq!(redis.scheme(), "redis");
        assert!(services.contains_key(redis.host_str().unwrap()), "REDIS_URL host is a service");
        for dependency in ["db", "redis"] {
            assert_eq!(instance["depends_on"][dependency]["condition"], "service_healthy", "{dependency}");
        }
        for mapping in instance["ports"].as_array().unwrap() {
            let (host, inside) = mapping.as_str().unwrap().rsplit_once(':').unwrap();
            assert_eq!(inside, port);
            published.push(host.to_owned());
        }
    }
    let distinct: std::collections::BTreeSet<&String> = published.iter().collect();
    assert_eq!(distinct.len(), published.len(), "each instance on a host port of its own: {published:?}");
}
