//! The SQLite adapter holds the contract of the core's `Sql` port (the suite every host's
//! adapter passes in its runtime), and the router sees a healthy platform.

use edgevideo_core::ports::conformance;
use edgevideo_testkit::exec::block_on;
use edgevideo_testkit::TestPlatform;
use http::StatusCode;

#[test]
fn the_sqlite_adapter_passes_the_sql_conformance_suite() {
    let p = TestPlatform::new();
    let report = block_on(conformance::sql(&p.sql, "t"));
    assert_eq!(report.failure, None);
    assert!(report.passed >= 9, "{report:?}");
}

#[test]
fn every_suite_passes_through_the_diagnostics_route() {
    let p = TestPlatform::new();
    let reply = p.get("/api/_diag/conformance");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    let reports = body["suites"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no reports in {body}"));
    assert_eq!(reports.len(), 4, "{body}");
    for report in reports {
        assert!(report["failure"].is_null(), "{report}");
    }
}

#[test]
fn health_is_ok_with_a_real_sql_engine() {
    let p = TestPlatform::new();
    let reply = p.get("/api/health");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["checks"]["sql"]["ok"], true);
}
