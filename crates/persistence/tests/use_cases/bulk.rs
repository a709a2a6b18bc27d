//! Bulk jobs (`domain::bulk`): the selection is frozen when the job starts, and the job works
//! exactly it.

use domain::{
    admin::CustomerFilter,
    bulk::{BulkAction, Selection},
};

use crate::Harness;

#[tokio::test]
async fn a_bulk_force_sign_in_works_exactly_the_selection_frozen_at_its_start() {
    let h = Harness::new().await;
    for email in ["out1@example.com", "out2@example.com", "stay@example.com"] {
        h.customer(email).await;
    }
    let out1 = h.customer_token("out1@example.com").await;
    let stay = h.customer_token("stay@example.com").await;
    let token = h.admin_token("bulk-admin", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let bulk = h.bulk();
    let selection = Selection::Filter(CustomerFilter {
        search: domain::search::Search::parse("out").unwrap(),
        ..CustomerFilter::default()
    });
    let job = bulk
        .start(
            &me,
            BulkAction::ForceSignIn,
            selection,
            &Harness::client("192.0.2.50"),
        )
        .await
        .unwrap();
    assert_eq!(job.total, 2);
    // A customer who matches only after the start is not in the job.
    h.customer("out3@example.com").await;
    let late = h.customer_token("out3@example.com").await;
    while bulk.work(100).await.unwrap().is_some() {}
    let done = bulk.job(job.id).await.unwrap().unwrap();
    assert_eq!((done.processed, done.failed), (2, 0));
    assert!(h.customer_principal(&out1).await.is_none());
    assert!(h.customer_principal(&stay).await.is_some());
    assert!(h.customer_principal(&late).await.is_some());
}
