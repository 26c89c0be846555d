//! Tests never read or change the user's own state: every `openweigh`
//! command a test runs has a temporary `OPENWEIGH_HOME` (what it imports or
//! configures lands there) and only the download cache is shared. Its own
//! file, so its temporary home is its own process's.

mod common;
use common::*;
use predicates::prelude::*;

#[test]
fn an_import_lands_in_the_test_home_and_the_users_table_is_never_read() {
    assert_ne!(test_home(), openweigh::assets::home().as_path(), "the test home must not be the user's");
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("prices.json");
    std::fs::write(
        &json,
        r#"{"deepinfra/Qwen/Qwen2.5-7B-Instruct": {"litellm_provider": "deepinfra", "input_cost_per_token": 4e-08,
            "output_cost_per_token": 1e-07, "mode": "chat"}}"#,
    )
    .unwrap();
    let table = test_home().join("prices.csv");
    openweigh()
        .args(["prices", "import"])
        .arg(&json)
        .assert()
        .success()
        .stdout(predicate::str::contains(table.display().to_string()));
    assert!(table.is_file());
    // The table in force for the tests' commands is the one imported here,
    // whatever the user imported into their own home.
    openweigh()
        .args(["prices", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 of 1 entries").and(predicate::str::contains(table.display().to_string())));
}
