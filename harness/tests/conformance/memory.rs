use crate::support::*;
use harness::Action;

#[test]
fn bad_pointers_and_lengths_answer_invalid_memory_access() {
    let (host, mut vm) = probe();
    let (id, action) = request(&mut vm, "memory", &[]);
    assert_eq!(report(&host, "memory.bad_key"), "InvalidMemoryAccess");
    assert_eq!(
        report(&host, "memory.bad_return_pointer"),
        "InvalidMemoryAccess"
    );
    assert_eq!(
        report(&host, "memory.length_overflow"),
        "InvalidMemoryAccess"
    );
    assert_eq!(report(&host, "memory.bad_log"), "InvalidMemoryAccess");
    assert_eq!(
        action,
        Ok(Action::Continue),
        "a refused call does not fail the stream"
    );
    assert!(vm.stream(id).unwrap().upstream.is_some());
    assert!(vm.failure().is_none());
}
