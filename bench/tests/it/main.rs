//! The load generator against the real servers, one binary: its smoke run of
//! every workload (`smoke`) and the fault matrix it drives (`faults`).

mod faults;
mod smoke;
