"""The course machinery: lesson table, profiles, settings, results, stamp, exercises and checks, sliders, lesson 06's
placement runs, runner, publishing, CLI.

Lessons import it to start (`coursetools.lesson.start_lesson`: profile, stamp, results) and for their exercises
(`coursetools.exercises.check`); what they measure with comes from `helpers`, which never imports this package.
"""
