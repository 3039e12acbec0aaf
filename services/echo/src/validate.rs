//! Field rules of the echo service; each failure names the field.

use meshwork_common::ServiceError;
use meshwork_proto::pb::echo::v1 as pb;

/// Longest echoed message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

fn message(message: &str) -> Result<(), ServiceError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(ServiceError::invalid(
            "message",
            format!("is {} bytes, longer than {MAX_MESSAGE_BYTES}", message.len()),
        ));
    }
    Ok(())
}

/// Checks an `Echo` request.
pub fn echo(req: &pb::EchoRequest) -> Result<(), ServiceError> {
    message(&req.message)?;
    if req.delay_ms > 60_000 {
        return Err(ServiceError::invalid("delay_ms", format!("is {}, more than 60000", req.delay_ms)));
    }
    if req.fail_with_code > 16 {
        return Err(ServiceError::invalid(
            "fail_with_code",
            format!("is {}, not a gRPC status code (0 to 16)", req.fail_with_code),
        ));
    }
    Ok(())
}

/// Checks an `EchoStream` request.
pub fn echo_stream(req: &pb::EchoStreamRequest) -> Result<(), ServiceError> {
    message(&req.message)?;
    if !(1..=1000).contains(&req.count) {
        return Err(ServiceError::invalid("count", format!("is {}, must be 1 to 1000", req.count)));
    }
    if req.interval_ms > 10_000 {
        return Err(ServiceError::invalid("interval_ms", format!("is {}, more than 10000", req.interval_ms)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_names_the_field() {
        let field = |e: ServiceError| match e {
            ServiceError::InvalidArgument { field, .. } => field,
            other => panic!("not INVALID_ARGUMENT: {other:?}"),
        };
        let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(
            field(echo(&pb::EchoRequest { message: big.clone(), ..Default::default() }).unwrap_err()),
            "message"
        );
        assert_eq!(field(echo(&pb::EchoRequest { delay_ms: 60_001, ..Default::default() }).unwrap_err()), "delay_ms");
        assert_eq!(
            field(echo(&pb::EchoRequest { fail_with_code: 17, ..Default::default() }).unwrap_err()),
            "fail_with_code"
        );
        assert!(echo(&pb::EchoRequest { message: "hi".into(), delay_ms: 60_000, fail_with_code: 16 }).is_ok());
        let stream = |count, interval_ms| pb::EchoStreamRequest { message: String::new(), count, interval_ms };
        assert_eq!(field(echo_stream(&stream(0, 0)).unwrap_err()), "count");
        assert_eq!(field(echo_stream(&stream(1001, 0)).unwrap_err()), "count");
        assert_eq!(field(echo_stream(&stream(1, 10_001)).unwrap_err()), "interval_ms");
        assert!(echo_stream(&stream(1000, 10_000)).is_ok());
        assert_eq!(
            field(echo_stream(&pb::EchoStreamRequest { message: big, count: 1, interval_ms: 0 }).unwrap_err()),
            "message"
        );
    }
}
