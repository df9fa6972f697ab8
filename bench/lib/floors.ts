/** A floor runs before and after what it is compared with; the higher rate is used, so drift cannot flatter a ratio. */
export function better<T>(a: T, b: T, rate: (x: T) => number): T {
  return rate(b) > rate(a) ? b : a;
}
