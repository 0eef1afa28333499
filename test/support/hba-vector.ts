/**
 * A third-party HBA test vector: the data of LinShim6's `userspace/libs/libcga/hba_test.c`
 * (github.com/sebstbarre/LinShim6), which took it from Francis Dupont's HBA implementation
 * and checks that LinShim6 gives the same addresses. Sec 1, an HBA-only set (a 384-bit
 * pseudo-key, no RSA key) over three prefixes, the modifier search starting at MODIFIER_START.
 *
 * hba_test.c also lists Hash1 values that its program never compares (and that no
 * longer match its own addresses); they are left out. The addresses and both Hash2 values
 * are what it checks, or what it states for the two modifiers tried.
 */
export const HBA_VECTOR = {
  sec: 1,
  pseudoKey: 'a36844b530e9211a4b262b16467cb7dfba1f595c0194f275be5a4d386f2c3c2382508773c7867f9b3b9e63a09c7bc48f',
  /** Where the modifier search starts; its Hash2 does not start with 16 zero bits. */
  modifierStart: '89a8a8b2e858d8b8f2633f44d2d7c361',
  hash2Start: '8f238ed53ae8b584d72164c5c160',
  /** The next modifier, the one the search ends on (Hash2 starts with 16 zero bits). */
  modifierFinal: '89a8a8b2e858d8b8f2633f44d2d7c362',
  hash2Final: '0000ad8a46e83c4494b7611dd011',
  /** The three prefixes, in order, with the address each gets. */
  set: [
    { prefix: 'fe80::/64', address: 'fe80::2c5f:924d:c4c:824e' },
    { prefix: '2001:688:1f99:1::/64', address: '2001:688:1f99:1:3cae:90c0:f2b6:e582' },
    { prefix: '2001:660:7301:1::/64', address: '2001:660:7301:1:3cd1:7773:6f00:f11b' },
  ],
} as const;
