// The port every model Service listens on: the route's backends, the data plane's names of them and
// the metrics selectors that follow from those all depend on it.
/** Port of every model Service (its target is the container's port named http). */
export const servicePort = 80;
