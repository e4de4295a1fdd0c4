//! Upload bodies handed to the multipart parser in bounded slices.
//!
//! `multer` (behind axum's `Multipart`) reads the body until nothing more is
//! ready, then returns everything it read as one chunk. A client that sends
//! faster than storage writes keeps the body ready: single chunks of 5 to 12
//! MB were measured during a 1 GiB upload. The upload keeps its chunks until
//! their part is stored, so the server's peak memory followed the client's
//! speed. Pausing the body after every `PACE` bytes ends multer's read there.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Bytes handed on before the body pauses: large enough that the pause (one
/// wake of the task) costs nothing measurable, small next to a 5 MiB part.
const PACE: usize = 256 * 1024;

/// The request with its body paced; a `map_request` middleware.
pub(crate) async fn pace_request_body(request: Request) -> Request {
    paced(request)
}

pub(crate) fn paced(request: Request) -> Request {
    request.map(|body| Body::from_stream(Paced::new(body.into_data_stream())))
}

/// Returns `Pending` once `PACE` bytes went by without a pause, waking itself
/// so that reading goes on at the next poll.
struct Paced<S> {
    inner: S,
    since_pause: usize,
}

impl<S> Paced<S> {
    fn new(inner: S) -> Self {
        Paced {
            inner,
            since_pause: 0,
        }
    }
}

impl<S, E> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.since_pause >= PACE {
            self.since_pause = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(bytes))) => self.since_pause += bytes.len(),
            // The reader stops here anyway.
            Poll::Pending => self.since_pause = 0,
            Poll::Ready(_) => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use futures::task::noop_waker_ref;
    use futures::{stream, StreamExt};

    use super::{Paced, PACE};

    #[test]
    fn pauses_after_every_pace_of_bytes_and_loses_nothing() {
        let chunk = 40 * 1024;
        let always_ready =
            stream::iter((0..100u8).map(|i| Ok::<_, Infallible>(Bytes::from(vec![i; chunk]))));
        let mut paced = Paced::new(always_ready);
        let mut context = Context::from_waker(noop_waker_ref());
        let (mut received, mut run, mut longest_run, mut pauses) = (Vec::new(), 0, 0, 0);
        loop {
            match paced.poll_next_unpin(&mut context) {
                Poll::Ready(Some(Ok(bytes))) => {
                    run += bytes.len();
                    longest_run = longest_run.max(run);
                    received.push(bytes[0]);
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => break,
                Poll::Pending => {
                    pauses += 1;
                    run = 0;
                }
            }
        }
        assert_eq!(received, (0..100u8).collect::<Vec<_>>());
        assert!(longest_run < PACE + chunk, "a run of {longest_run} bytes");
        // A pause after every run of chunks reaching PACE (7 of 40 KiB).
        assert_eq!(pauses, 100 / PACE.div_ceil(chunk));
    }
}
