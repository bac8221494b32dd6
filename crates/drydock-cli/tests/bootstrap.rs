//! `drydock images bootstrap` for real: a Debian root filesystem made with
//! mmdebstrap, imported through the Engine API, and an image built on it;
//! a second bootstrap skips what exists. Uses test tags, never the real base
//! images.

mod common;

use common::{engine, text, Repo};
use drydock_core::engine::{labels::RunLabels, ContainerSpec};

#[tokio::test]
async fn bootstrap_imports_a_rootfs_builds_on_it_and_skips_what_exists() {
    if std::process::Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("mmdebstrap is not installed: scripts/ensure-engine.sh installs it");
    }
    let id = std::process::id();
    let rootfs = format!("drydock-test/debian:boot-{id}");
    let on_top = format!("drydock-test/on-rootfs:boot-{id}");
    let repo = Repo::fixture("tiny");
    let base = repo.path().join("base");
    std::fs::create_dir_all(base.join("hello")).unwrap();
    std::fs::write(
        base.join("hello/Dockerfile"),
        format!(
            "FROM {rootfs}\nRUN echo bootstrapped > /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        base.join("manifest.yml"),
        format!(
            "rootfs:\n  tag: {rootfs}\n  suite: bookworm\n  mirror: http://deb.debian.org/debian\n  variant: minbase\n  changes: ['CMD [\"bash\"]', 'ENV LANG=C.UTF-8', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']\nimages:\n  - tag: {on_top}\n    context: hello\n"
        ),
    )
    .unwrap();
    let manifest = base.join("manifest.yml");
    let manifest = manifest.to_str().unwrap();

    let engine = engine().await;
    let first = repo
        .run(&["images", "bootstrap", "--manifest", manifest], &[])
        .await;
    let cleanup = || async {
        let _ = engine.remove_image(&on_top, true).await;
        let _ = engine.remove_image(&rootfs, true).await;
    };
    if first.status.code() != Some(0) {
        cleanup().await;
        panic!("bootstrap failed: {}", text(&first));
    }
    let imported = engine
        .image(&rootfs)
        .await
        .unwrap()
        .expect("the rootfs image");
    let built = engine
        .image(&on_top)
        .await
        .unwrap()
        .expect("the image built on it");

    // The image built on the imported rootfs runs, with the import's changes applied.
    let spec = ContainerSpec {
        name: format!("drydock-boot-{id}"),
        image: on_top.clone(),
        labels: RunLabels::for_this_process(&format!("boot-{id}"), "bootstrap-tests")
            .with_role("test"),
        ..Default::default()
    };
    let container = engine.create_container(&spec).await.unwrap();
    engine.start_container(&container, &spec).await.unwrap();
    let code = engine.wait_container(&container).await.unwrap();
    let output = engine.tail_logs(&container, 5).await.unwrap();
    engine.remove_container(&container).await.unwrap();

    let second = repo
        .run(&["images", "bootstrap", "--manifest", manifest], &[])
        .await;
    let after = engine.image(&rootfs).await.unwrap().map(|i| i.id);
    cleanup().await;

    assert_eq!(code, 0, "{output}");
    assert_eq!(output.trim(), "bootstrapped");
    assert!(!built.id.is_empty());
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let said = text(&second);
    assert!(
        said.contains(&format!("{rootfs} exists")) && said.contains(&format!("{on_top} exists")),
        "{said}"
    );
    assert_eq!(
        after.as_deref(),
        Some(imported.id.as_str()),
        "a second bootstrap changes nothing"
    );
}
